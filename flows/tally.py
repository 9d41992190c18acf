"""A run as its stages see it (:class:`Run`), and its running totals, typed: problems and
batches by outcome, templates, cost, and the seconds spent in each stage. What a run adds
up here becomes its :class:`~pipeline.results.RunSummary`.

Light on purpose: the run core imports it before it knows whether there is any work, and an
empty run must not load Qiskit (the batch types are imported for annotations only)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pipeline.vocabulary import Route, State

if TYPE_CHECKING:
    from batching.batches import Batch, TemplateUse
    from flows.deps import RunDeps
    from pipeline.results import ProblemRow


class Stage(StrEnum):
    """The stages a run's time is told in (``t_<stage>_s`` in ``runs/``)."""

    RECOVER = "recover"
    COLLECT = "collect"
    PLAN = "plan"
    COMPILE = "compile"
    CLUSTER_WAIT = "cluster_wait"
    EXECUTE = "execute"


@dataclass
class StageTimes:
    """Seconds per stage; a stage entered twice adds up."""

    recover: float = 0.0
    collect: float = 0.0
    plan: float = 0.0
    compile: float = 0.0
    cluster_wait: float = 0.0
    execute: float = 0.0

    def add(self, stage: Stage, seconds: float) -> None:
        setattr(self, stage.value, getattr(self, stage.value) + seconds)


@dataclass
class Clock:
    """The run's stage times, and its whole time since it began."""

    times: StageTimes = field(default_factory=StageTimes)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def stage(self, stage: Stage) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.times.add(stage, time.perf_counter() - started)

    def total(self) -> float:
        return time.perf_counter() - self.started


@dataclass
class RunTally:
    """What a run has claimed, routed, answered and spent so far."""

    problems: int = 0
    completed: int = 0
    degraded: int = 0
    failed: int = 0
    released: int = 0
    batches: int = 0
    quantum_batches: int = 0
    classical_batches: int = 0
    templates_compiled: int = 0
    templates_reused: int = 0
    cost_micro_usd: int = 0  # whole micro-dollars: sums of many small costs stay exact

    def routed(self, batches: Sequence[Batch]) -> None:
        self.batches += len(batches)
        self.quantum_batches += sum(b.route == Route.QUANTUM for b in batches)
        self.classical_batches += sum(b.route == Route.CLASSICAL for b in batches)

    def written(self, rows: Sequence[ProblemRow]) -> None:
        """Rows committed: each counted by its status, its cost added."""
        for row in rows:
            if row.status == State.COMPLETED:
                self.completed += 1
            elif row.status == State.DEGRADED:
                self.degraded += 1
            else:
                self.failed += 1
            self.cost_micro_usd += round(row.cost_usd * 1e6)

    def template(self, use: TemplateUse) -> None:
        """The template a batch ran on, counted once per shape (its first batch)."""
        if use.first:
            if use.compiled:
                self.templates_compiled += 1
            else:
                self.templates_reused += 1

    @property
    def problems_per_batch(self) -> float:
        return round(self.problems / self.batches, 2) if self.batches else 0.0


@dataclass(frozen=True)
class Run:
    """One run as its stages see it: who it is, its dependencies, its clock and tally."""

    run_id: str
    deps: RunDeps
    started_at: datetime
    clock: Clock = field(default_factory=Clock)
    tally: RunTally = field(default_factory=RunTally)
