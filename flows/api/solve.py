"""The synchronous solve that ``POST /v1/solve`` and ``qhopper solve`` share.

A caller gives a time budget T, counted from its request's arrival (or the command's start).
The problems are submitted with ``deadline = now + what is left of T`` (so routing and the
backend call policy know the budget: the quantum path is taken only when it can finish, and
a quantum attempt that cannot is stopped and answered by CP-SAT, labelled ``degraded`` with
its ``fallback_reason``), then the run core runs them at once (``run_once(deps, only=ids)``
on :func:`solve_deps`). The caller waits at most T plus a small margin, whatever happens:
the service runs it in a worker process that is killed at the budget
(:mod:`flows.api.workers`), the command on a daemon thread left behind
(:func:`run_in_thread`); either way the caller gets the problem's state and a clear error
instead of a hang, and the queue keeps the problem for the next run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flows.compute import ComputeChoice
from flows.deps import RunDeps
from flows.run import run_once
from pipeline.config import Settings
from pipeline.intake import FINAL_STATES
from pipeline.model import ProblemSpec
from pipeline.results import open_files, query

log = logging.getLogger("qhopper.api")

MARGIN_S = 0.5  # what a caller may wait beyond its budget: row reading, HTTP, scheduling
POLL_S = 0.02  # while another run holds the problem


@dataclass(frozen=True)
class Budget:
    """A solve's time budget: ``timeout_s`` from its start (``time.monotonic``), so reading,
    validating and queueing count against it as much as solving does."""

    timeout_s: float
    deadline: float

    @classmethod
    def from_start(cls, timeout_s: float, started: float) -> Budget:
        return cls(timeout_s, started + timeout_s)

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True)
class SolveAnswer:
    """One problem of a synchronous solve: its state, and its result row once answered."""

    id: str
    key: str
    state: str
    result: dict[str, Any] | None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "state": self.state, "result": self.result}
        if self.error:
            body["error"] = self.error
        return body


def with_deadline(spec: ProblemSpec, timeout_s: float, now: datetime | None = None) -> ProblemSpec:
    """``spec`` due within ``timeout_s`` (or its own earlier deadline)."""
    due = (now or datetime.now(UTC)) + timedelta(seconds=timeout_s)
    if spec.deadline is not None and spec.deadline <= due:
        return spec
    return spec.model_copy(update={"deadline": due})


def solve_settings(settings: Settings, timeout_s: float) -> Settings:
    """Settings for one synchronous run: CP-SAT and the run's wait bounded by the budget."""
    classical = settings.classical.model_copy(
        update={"time_limit_s": min(settings.classical.time_limit_s, max(0.1, 0.4 * timeout_s))}
    )
    dask = settings.dask.model_copy(update={"run_timeout_s": max(0.5, timeout_s)})
    return settings.model_copy(update={"classical": classical, "dask": dask})


def solve_deps(deps: RunDeps, timeout_s: float) -> RunDeps:
    """``deps`` for one synchronous run within ``timeout_s``: small, in this process, never
    a cluster to start."""
    return dataclasses.replace(
        deps,
        settings=solve_settings(deps.settings, timeout_s),
        compute=ComputeChoice(None, 1, math.inf, deps.settings.dask.start_timeout_s),
    )


def run_in_thread(deps: RunDeps, ids: Sequence[str], budget: Budget) -> str | None:
    """Run ``ids`` now on a daemon thread; None when the run finished within the budget, else
    why not (the run may still be going: a thread cannot be stopped, so this is for a command
    that ends when it has answered; the service kills a worker process instead)."""
    done = threading.Event()
    failure: list[str] = []

    def work() -> None:
        try:
            run_once(solve_deps(deps, budget.left()), only=list(ids))
        except Exception as exc:  # reported to the caller; the queue keeps the problem
            log.error(
                "synchronous run of %s failed: %s: %s", ",".join(ids), type(exc).__name__, exc
            )
            failure.append(f"the run failed: {type(exc).__name__}: {exc}")
        finally:
            done.set()

    threading.Thread(target=work, name="qhopper-solve", daemon=True).start()
    if not done.wait(budget.left() + MARGIN_S / 2):
        return f"not answered within {budget.timeout_s:g} s"
    return failure[0] if failure else None


def read_answers(
    deps: RunDeps, ids: Sequence[str], keys: Sequence[str], budget: Budget, why: str | None
) -> list[SolveAnswer]:
    """Each problem's state and result row once its run is over (``why``: why it may not have
    answered). A problem another run holds (``serve`` claimed it first) is waited for, by
    polling the intake, until the budget is spent."""
    answers: list[SolveAnswer] = []
    for problem_id, key in zip(ids, keys, strict=True):
        row = deps.intake.get(problem_id)
        while row is not None and row["state"] not in FINAL_STATES and budget.left() > 0:
            time.sleep(POLL_S)
            row = deps.intake.get(problem_id)
        state = row["state"] if row else "unknown"
        result = result_row(deps.settings, problem_id, row) if row else None
        error = None
        if result is None:
            error = (
                f"{why or f'not answered within {budget.timeout_s:g} s'}; the problem stays in "
                f"the queue ({state}) and the interval flow will answer it: "
                f"GET /v1/problems/{problem_id}"
            )
        answers.append(SolveAnswer(problem_id, key, state, result, error))
    return answers


def result_row(
    settings: Settings, problem_id: str, intake_row: dict[str, Any]
) -> dict[str, Any] | None:
    """The problem's result row as JSON, once it is final; None before."""
    if intake_row.get("state") not in FINAL_STATES:
        return None
    rows: list[dict[str, Any]] = []
    path = intake_row.get("result_path")
    if path:
        rows = _rows_in(settings, path, problem_id)
    if not rows:  # a relative path written from another working folder: ask DuckDB
        table = query(
            settings.results_location, "SELECT * FROM problems WHERE problem_id = ?", [problem_id]
        )
        rows = table.to_pylist()
    return jsonable(rows[0]) if rows else None


def _rows_in(settings: Settings, key: str, problem_id: str) -> list[dict[str, Any]]:
    """The problem's rows in its batch file, read through the results seam; none when the
    file cannot be read here (not published yet, or written under another folder)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        table = open_files(settings.results_location).read(key)
    except (OSError, ValueError, pa.ArrowException):
        return []
    rows: list[dict[str, Any]] = table.filter(pc.field("problem_id") == problem_id).to_pylist()
    return rows


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row as plain JSON: UTC ISO-8601 times, no NaN, lists for tuples."""
    return {name: _value(value) for name, value in row.items() if name != "date"}


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    return value
