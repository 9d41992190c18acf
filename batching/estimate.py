"""How long a run will take, from the router's own estimates, said before it computes.

Per batch the same numbers routing uses: a quantum batch's typical workload on the backend's
cost model, a classical problem's expected CP-SAT time (its time limit once it is large).
The run's wall time is their core-seconds over the workers, scaled from the claimed wave to
the whole backlog; the estimate also names what dominates it and the setting that governs
that, so an operator knows which knob to turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batching.batches import Batch, PlannedBatch
from batching.economics import batch_workload
from batching.sizing import classical_seconds
from pipeline.backends import Backend
from pipeline.config import Settings
from pipeline.durations import duration


@dataclass(frozen=True)
class RunEstimate:
    """Core-seconds of a set of batches, by route, and what makes them long."""

    quantum_problems: int = 0
    quantum_batches: int = 0
    quantum_s: float = 0.0
    largest_qubits: int = 0
    classical_problems: int = 0
    classical_batches: int = 0
    classical_s: float = 0.0
    at_time_limit: int = 0  # classical problems expected to run to their time limit
    time_limit_s: float = 0.0

    @property
    def core_seconds(self) -> float:
        return self.quantum_s + self.classical_s

    @property
    def problems(self) -> int:
        return self.quantum_problems + self.classical_problems

    def wall_seconds(self, workers: int, backlog: int) -> float:
        """The whole backlog's wall time on ``workers``, at this wave's cost per problem."""
        scale = max(backlog, self.problems) / self.problems if self.problems else 0.0
        return self.core_seconds * scale / max(1, workers)

    def dominant(self) -> str:
        """What most of the time goes to, and the setting that governs it."""
        if self.classical_s >= self.quantum_s:
            if (
                self.at_time_limit
                and self.at_time_limit * self.time_limit_s >= self.classical_s / 2
            ):
                return (
                    f"{self.at_time_limit} classical problems × {self.time_limit_s:g} s limit "
                    "(classical.time_limit_s)"
                )
            return f"{self.classical_problems} classical problems (CP-SAT)"
        return (
            f"{self.quantum_batches} quantum batches of up to {self.largest_qubits} qubits "
            "(quantum.max_qubits, quantum.max_iterations)"
        )

    def describe(self, workers: int, backlog: int) -> str:
        wall = self.wall_seconds(workers, backlog)
        scope = "" if backlog <= self.problems else f", from the first {self.problems} of {backlog}"
        return (
            f"plan: {self.quantum_problems} quantum problems in {self.quantum_batches} batches "
            f"(~{duration(self.quantum_s)} of compute), {self.classical_problems} classical "
            f"in {self.classical_batches} (~{duration(self.classical_s)}); estimated "
            f"~{duration(wall)} on {workers} worker{'s' * (workers != 1)}{scope}; "
            f"most of it: {self.dominant()}"
        )


def estimate_run(
    batches: Sequence[Batch | PlannedBatch], backend: Backend, settings: Settings
) -> RunEstimate:
    """The estimate of ``batches``, planned (quantum where it is open to them) or routed."""
    limit = settings.classical.time_limit_s
    quantum = [b for b in batches if b.shape is not None]
    classical = [p for b in batches if b not in quantum for p in b.problems]
    seconds = [classical_seconds(p, limit) for p in classical]
    return RunEstimate(
        quantum_problems=sum(b.size for b in quantum),
        quantum_batches=len(quantum),
        quantum_s=sum(_quantum_seconds(b, backend, settings) for b in quantum),
        largest_qubits=max((b.shape.n_qubits for b in quantum if b.shape), default=0),
        classical_problems=len(classical),
        classical_batches=len(batches) - len(quantum),
        classical_s=sum(seconds),
        at_time_limit=sum(s >= limit for s in seconds),
        time_limit_s=limit,
    )


def _quantum_seconds(batch: Batch | PlannedBatch, backend: Backend, settings: Settings) -> float:
    """A quantum batch's typical core-seconds on the backend (compile excluded: a template
    compiles once per shape, on its own thread)."""
    assert batch.shape is not None
    work = batch_workload(batch.shape, batch.problems, backend, settings, 1, typical=True)
    estimate = backend.costs.estimate(
        work, settings.prices, settings.routing.simulator_memory_bytes
    )
    return estimate.execute_s
