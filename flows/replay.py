"""Replay and drift: stored answers executed again, from what their first run stored.

``replay_batch`` re-executes one stored batch: every problem from its canonical spec (the
intake keeps it), quantum ones on the template of the QPY store at their stored angles
with the stored seed and the batch's chunks cut as they were, classical ones with CP-SAT
under the same seed and time limit; it compares stored and replayed objectives.
``measure_drift`` executes a sample of stored quantum answers on another backend (a noisy
simulator, a device) at their stored angles and writes ``drift/`` rows.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batching.sizing import split_chunks
from flows.deps import open_intake_to_read
from pipeline.backends import Backend, CallPolicy, get_backend
from pipeline.config import Settings
from pipeline.errors import QhopperError
from pipeline.formulation import Formulation, formulate
from pipeline.intake import new_id
from pipeline.model import spec_from_json
from pipeline.qaoa.shapes import ShapeKey
from pipeline.qaoa.templates import PackedTemplate, TemplateStore
from pipeline.results import DriftRow, ResultsLocation, open_files, query, to_table
from pipeline.tasks import Answer, ChunkResult, ClassicalTask, WorkItem
from pipeline.workers.classical import run_classical_task
from pipeline.workers.rerun import ReplayTask, replay_chunk, rerun_shape

TOLERANCE = 1e-9  # relative: objectives are recomputed from the bits, so they match exactly


class NothingToReplay(QhopperError):
    """The batch or the sample asked for has no stored rows to execute again."""


@dataclass(frozen=True)
class Replayed:
    """One problem's stored and replayed answers."""

    problem_id: str
    route: str
    stored_objective: float | None
    replayed_objective: float | None
    stored_expected: float | None
    replayed_expected: float | None

    @property
    def reproduced(self) -> bool:
        a, b = self.stored_objective, self.replayed_objective
        return a is not None and b is not None and abs(a - b) <= TOLERANCE * max(1.0, abs(a))


def replay_batch(settings: Settings, batch_id: str, backend_spec: str | None) -> list[Replayed]:
    """Every answered problem of ``batch_id`` executed again; see the module docstring."""
    rows = _batch_rows(settings.results_location, batch_id)
    answered = [r for r in rows if r["solution"] is not None]
    if not answered:
        raise NothingToReplay(
            f"batch {batch_id} has no answered rows under {settings.results_location}"
        )
    formulations = _formulations(settings, [r["problem_id"] for r in answered])
    quantum = [r for r in answered if r["route"] == "quantum"]
    classical = [r for r in answered if r["route"] != "quantum"]
    results: list[Answer] = []
    if quantum:
        spec = backend_spec or quantum[0]["backend"]
        backend = get_backend(spec, settings.quantum.max_qubits)
        [batch] = query(
            settings.results_location, "SELECT chunks FROM batches WHERE batch_id = ?", [batch_id]
        ).to_pylist()
        chunks = split_chunks(quantum, max(1, int(batch["chunks"] or 1)))
        results += _run(settings, backend, chunks, formulations)
    if classical:
        tasks = [
            ClassicalTask(
                r["problem_id"],
                formulations[r["problem_id"]],
                settings.classical.time_limit_s,
                settings.classical.workers,
                settings.quantum.seed,
                settings.classical.enumerate_max_variables,
            )
            for r in classical
        ]
        results += _execute(run_classical_task, tasks)
    by_id = {a.problem_id: a for a in results}
    return [
        Replayed(
            r["problem_id"],
            r["route"],
            r["objective"],
            by_id[r["problem_id"]].objective if r["problem_id"] in by_id else None,
            r["expected_objective"],
            by_id[r["problem_id"]].expected_objective if r["problem_id"] in by_id else None,
        )
        for r in answered
    ]


@dataclass(frozen=True)
class DriftSample:
    """The drift rows written, and how many stored answers could be drawn: a sample smaller
    than asked says why (the stored answers of other backends with angles, those that fit)."""

    rows: list[DriftRow]
    stored: int
    eligible: int


def measure_drift(settings: Settings, backend_spec: str, sample: int, seed: int) -> DriftSample:
    """``sample`` stored quantum answers executed on ``backend_spec``; writes ``drift/``."""
    rows = query(
        settings.results_location,
        "SELECT * FROM problems WHERE route = 'quantum' AND angles IS NOT NULL "
        "AND backend <> ? ORDER BY problem_id",
        [backend_spec],
    ).to_pylist()
    backend = get_backend(backend_spec, settings.quantum.max_qubits)
    fitting = [r for r in rows if backend.target.why_not(r["n_variables"]) is None]
    chosen = random.Random(seed).sample(fitting, min(sample, len(fitting)))
    if not chosen:
        raise NothingToReplay(f"no stored quantum answer fits {backend_spec}")
    formulations = _formulations(settings, [r["problem_id"] for r in chosen])
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in chosen:
        groups[row["shape_key"]].append(row)
    answers = {
        a.problem_id: a for a in _run(settings, backend, list(groups.values()), formulations)
    }
    now = datetime.now(UTC)
    drift_id = new_id("d")
    drift = [
        DriftRow(
            drift_id=drift_id,
            problem_id=r["problem_id"],
            batch_id=r["batch_id"],
            kind=r["kind"],
            n_variables=r["n_variables"],
            reps=r["reps"],
            stored_backend=r["backend"],
            replay_backend=backend_spec,
            stored_expected=r["expected_objective"],
            replay_expected=answers[r["problem_id"]].expected_objective,
            stored_objective=r["objective"],
            replay_objective=answers[r["problem_id"]].objective,
            difference=_difference(r["expected_objective"], answers[r["problem_id"]]),
            reference_objective=r["reference_objective"],
            created_at=now,
        )
        for r in chosen
    ]
    files = open_files(settings.results_location)
    files.write(files.key("drift", now.date(), drift_id), to_table(drift, DriftRow))
    return DriftSample(drift, len(rows), len(fitting))


def _run(
    settings: Settings,
    backend: Backend,
    chunks: Sequence[Sequence[dict[str, Any]]],
    formulations: dict[str, Formulation],
) -> list[Answer]:
    """Each chunk of stored quantum rows at its angles, on ``backend``'s template."""
    store = TemplateStore(settings.artifacts_dir)
    policy = CallPolicy.from_settings(settings, backend=backend.name)  # its own limits
    tasks = []
    for chunk in chunks:
        for shape, rows in _by_shape(chunk, formulations, backend).items():
            tasks.append(
                ReplayTask(
                    template=PackedTemplate.pack(store.get(shape, backend).template),
                    problems=tuple(
                        WorkItem(r["problem_id"], formulations[r["problem_id"]], int(r["shots"]))
                        for r in rows
                    ),
                    angles=tuple(tuple(r["angles"]) for r in rows),
                    backend_spec=backend.name,
                    max_qubits=settings.quantum.max_qubits,
                    seed=settings.quantum.seed,
                    policy=policy,
                )
            )
    return _execute(replay_chunk, tasks)


def _by_shape(
    rows: Sequence[dict[str, Any]], formulations: dict[str, Formulation], backend: Backend
) -> dict[ShapeKey, list[dict[str, Any]]]:
    """Stored rows by the template they run on here: a pooled row's pool where ``backend``
    is simulated exactly, else each row's exact structure (a device needs it)."""
    groups: dict[ShapeKey, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        formulation = formulations[row["problem_id"]]
        groups[rerun_shape(formulation, int(row["reps"]), row["shape_key"], backend)].append(row)
    return groups


def _execute(fn: Callable[[Any], ChunkResult], tasks: Sequence[Any]) -> list[Answer]:
    """The worker functions, called in this process one after another: a replay is small."""
    return [answer for task in tasks for answer in fn(task).answers]


def _batch_rows(location: ResultsLocation, batch_id: str) -> list[dict[str, Any]]:
    """The batch's problem rows in their stored order (the order its chunks were cut in)."""
    files = open_files(location)
    keys = files.find("problems", batch_id)
    if not keys:
        raise NothingToReplay(f"no stored batch {batch_id!r} under {location}")
    rows: list[dict[str, Any]] = files.read(keys[0]).to_pylist()
    return rows


def _formulations(settings: Settings, problem_ids: Sequence[str]) -> dict[str, Formulation]:
    """Each problem formulated from the canonical spec the intake keeps."""
    intake = open_intake_to_read(settings)
    try:
        found = {pid: intake.get(pid) for pid in problem_ids}
    finally:
        intake.close()
    missing = [pid for pid, row in found.items() if row is None]
    if missing:
        raise NothingToReplay(f"the intake has no spec for {len(missing)} problems: {missing[:3]}")
    return {
        pid: formulate(spec_from_json(row["spec_json"]))
        for pid, row in found.items()
        if row is not None
    }


def _difference(stored: float | None, replayed: Answer) -> float | None:
    if stored is None or replayed.expected_objective is None:
        return None
    return replayed.expected_objective - stored
