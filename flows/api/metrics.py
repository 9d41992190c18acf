"""What the service exposes on ``/metrics`` (Prometheus text, every name ``qhopper_``).

Two sources, so a scrape is cheap and still covers runs ``serve`` made in another process:
- read at scrape time from the intake (one grouped query): queue depth per state, answers
  by solver path and status, fallback rate, first-attempt success;
- read from the result Parquet (DuckDB, cached for ``RESULTS_TTL_S``): per-stage latency
  histograms of every answered problem, and what they cost;
- counted in this process: HTTP requests, their latency and how many are in flight, the
  stage times of this service's own synchronous runs, and its solve workers' states.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from flows.deps import RunDeps
from pipeline.intake import COMPLETED, DEGRADED, FAILED, FINAL_STATES, STATES, problems
from pipeline.results import RunSummary, query

log = logging.getLogger("qhopper.api")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RESULTS_TTL_S = 15.0
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
PROBLEM_STAGES = ("queue", "compile", "execute", "post", "total")
RUN_STAGES = ("recover", "collect", "plan", "compile", "cluster_wait", "execute", "total")


class Metrics:
    """The service's registry: its own counters plus the intake and result collectors."""

    def __init__(
        self,
        deps: RunDeps,
        summaries: Callable[[], list[RunSummary]],
        workers: Callable[[], Mapping[str, int]],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "qhopper_http_requests",
            "HTTP requests answered, by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "qhopper_http_request_duration_seconds",
            "HTTP request latency, by route",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "qhopper_http_requests_in_flight",
            "HTTP requests being answered now",
            registry=self.registry,
        )
        self.solve_stages = Histogram(
            "qhopper_solve_run_stage_seconds",
            "Stage times of this service's synchronous runs (run_once)",
            ["stage"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._summaries = summaries
        self.registry.register(_IntakeCollector(deps))
        self.registry.register(_ResultCollector(deps))
        self.registry.register(_WorkerCollector(workers))

    def render(self) -> bytes:
        for summary in self._summaries():
            for stage in RUN_STAGES:
                self.solve_stages.labels(stage).observe(getattr(summary, f"t_{stage}_s"))
        return generate_latest(self.registry)


class _WorkerCollector(Collector):
    """The solve worker processes, warm or still warming (a spare after a kill, say)."""

    def __init__(self, states: Callable[[], Mapping[str, int]]) -> None:
        self.states = states

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "qhopper_solve_workers", "Solve worker processes, by state", labels=["state"]
        )
        for state, count in sorted(self.states().items()):
            family.add_metric([state], count)
        yield family


class _IntakeCollector(Collector):
    """Queue depth and answers, read from the intake at scrape time."""

    def __init__(self, deps: RunDeps) -> None:
        self.deps = deps

    def collect(self) -> Iterable[Metric]:
        try:
            with self.deps.intake.engine.connect() as connection:
                rows = connection.execute(
                    sa.select(
                        problems.c.state,
                        problems.c.solver_path,
                        sa.func.count(),
                        sa.func.sum(sa.case((problems.c.attempts == 1, 1), else_=0)),
                    ).group_by(problems.c.state, problems.c.solver_path)
                ).all()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("metrics: the intake did not answer: %s", type(exc).__name__)
            return
        depth = dict.fromkeys(STATES, 0)
        answers = CounterMetricFamily(
            "qhopper_answers",
            "Problems answered, by the path that answered and their status",
            labels=["solver_path", "status"],
        )
        final = degraded = first_attempt = 0
        for state, solver_path, count, first in rows:
            depth[state] = depth.get(state, 0) + int(count)
            if state in FINAL_STATES:
                answers.add_metric([solver_path or "none", state], int(count))
                final += int(count)
                degraded += int(count) if state == DEGRADED else 0
                first_attempt += int(first or 0) if state == COMPLETED else 0
        queue = GaugeMetricFamily(
            "qhopper_queue_depth", "Problems in the intake, by state", labels=["state"]
        )
        for state, count in depth.items():
            queue.add_metric([state], count)
        yield queue
        yield answers
        yield GaugeMetricFamily(
            "qhopper_fallback_ratio",
            "Share of answered problems the classical fallback answered (degraded)",
            value=degraded / final if final else 0.0,
        )
        yield GaugeMetricFamily(
            "qhopper_first_attempt_success_ratio",
            "Share of answered problems completed on their first claim",
            value=first_attempt / final if final else 0.0,
        )
        yield GaugeMetricFamily(
            "qhopper_failed_problems",
            "Problems that ended failed",
            value=depth.get(FAILED, 0),
        )


class _ResultCollector(Collector):
    """Per-stage latency histograms and cost of every answered problem, from the Parquet."""

    def __init__(self, deps: RunDeps) -> None:
        self.deps = deps
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def _read(self) -> dict[str, Any]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < RESULTS_TTL_S:
                return self._cached[1]
            parts = ["count(*) AS n", "coalesce(sum(cost_usd), 0) AS cost"]
            for stage in PROBLEM_STAGES:
                column = f"t_{stage}_s"
                parts.append(f"coalesce(sum({column}), 0) AS {stage}_sum")
                for index, bound in enumerate(BUCKETS):
                    parts.append(f"count(*) FILTER (WHERE {column} <= {bound}) AS {stage}_{index}")
            table = query(
                self.deps.settings.results_location, f"SELECT {', '.join(parts)} FROM problems"
            )
            values = table.to_pylist()[0]
            self._cached = (time.monotonic(), values)
            return values

    def collect(self) -> Iterable[Metric]:
        try:
            values = self._read()
        except Exception as exc:  # a scrape never fails because a file is being replaced
            log.warning("metrics: the results could not be read: %s", type(exc).__name__)
            return
        total = int(values["n"] or 0)
        yield CounterMetricFamily(
            "qhopper_cost_usd", "What every answered problem cost, in USD", value=values["cost"]
        )
        family = HistogramMetricFamily(
            "qhopper_problem_stage_seconds",
            "Per-problem stage latency of every answered problem",
            labels=["stage"],
        )
        for stage in PROBLEM_STAGES:
            buckets = [(str(b), int(values[f"{stage}_{i}"] or 0)) for i, b in enumerate(BUCKETS)]
            buckets.append(("+Inf", total))
            family.add_metric([stage], buckets, float(values[f"{stage}_sum"] or 0.0))
        yield family
