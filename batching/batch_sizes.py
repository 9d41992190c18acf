"""How many problems a batch holds: as many as make ``batch_seconds`` of expected compute,
within the configured caps.

A batch pays a fixed price whatever its size (routing, a task or two on Dask, a journal
transaction, two Parquet files and their fsyncs, a state change): a run of small problems in
batches of a fixed 64 spends more on that bookkeeping than on answers. So a batch is sized
by what its problems are expected to cost: a quantum problem by what one more problem adds
to its batch's typical workload on the backend (the backend's own estimate: milliseconds on
the fast path, a problem's optimiser steps elsewhere), a classical one by CP-SAT's expected
time. Small problems fill batches up to the cap; slow ones make batches of a few.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from batching.batches import PlannedProblem
from batching.economics import batch_workload
from batching.sizing import classical_seconds, even_cuts
from pipeline.backends import Backend
from pipeline.config import Settings
from pipeline.qaoa.shapes import ShapeKey


@dataclass
class BatchSizes:
    """How a run cuts each group of problems into batches (a planner's ``Cutter``)."""

    backend: Backend
    settings: Settings
    _per_problem: dict[ShapeKey, float] = field(default_factory=dict)

    def __call__(
        self, shape: ShapeKey | None, problems: Sequence[PlannedProblem]
    ) -> list[Sequence[int]]:
        """The group's batches, as positions in ``problems``."""
        if shape is None:
            return self._classical(problems)
        quantum = self.settings.quantum
        seconds = self._marginal_seconds(shape, problems[0])
        fits = (
            math.floor(quantum.batch_seconds / seconds) if seconds > 0 else quantum.max_batch_size
        )
        return list(even_cuts(len(problems), max(1, min(quantum.max_batch_size, fits))))

    def _classical(self, problems: Sequence[PlannedProblem]) -> list[Sequence[int]]:
        """Cheapest first, each batch filled until it holds ``batch_seconds`` of CP-SAT's
        expected time (or the cap): tiny problems share a batch, ones at the time limit get
        one each, and a slow problem never holds up a batch of fast ones."""
        classical = self.settings.classical
        seconds = [classical_seconds(p, classical.time_limit_s) for p in problems]
        batches: list[list[int]] = []
        held = math.inf
        for position in sorted(range(len(problems)), key=lambda i: seconds[i]):
            full = len(batches[-1]) >= classical.max_batch_size if batches else True
            if full or held + seconds[position] > classical.batch_seconds:
                batches.append([])
                held = 0.0
            batches[-1].append(position)
            held += seconds[position]
        return [sorted(batch) for batch in batches]

    def _marginal_seconds(self, shape: ShapeKey, problem: PlannedProblem) -> float:
        """What one more problem like ``problem`` adds to a batch of its shape: the
        backend's typical estimate for two problems less that for one."""
        if shape not in self._per_problem:
            one, two = (
                self.backend.costs.estimate(
                    batch_workload(shape, [problem] * k, self.backend, self.settings, 1, True),
                    self.settings.prices,
                    self.settings.routing.simulator_memory_bytes,
                ).execute_s
                for k in (1, 2)
            )
            self._per_problem[shape] = max(0.0, two - one)
        return self._per_problem[shape]
