"""A canary task on a worker: a batch's quantum answers sampled on a candidate backend at the
angles the main backend reached.

The worker builds the candidate and its templates itself, so the run's own process never
loads a device model or transpiles for it: the task is plain data (formulations, angles,
shots). Problems the candidate cannot take (``target.why_not``) come back as skipped, with
the reason; everything else is :func:`~pipeline.workers.rerun.replay_chunk`, one call per
template, exactly as ``qhopper drift`` executes stored answers. A candidate that raises
raises here: the run turns it into failed canary rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pipeline.backends import Backend, CallPolicy, get_backend
from pipeline.qaoa.shapes import ShapeKey
from pipeline.qaoa.templates import PackedTemplate, TemplateStore, artifact_key, compile_template
from pipeline.tasks import Answer, WorkItem
from pipeline.workers.rerun import ReplayTask, replay_chunk, rerun_shape


@dataclass(frozen=True)
class CanaryTask:
    """One batch's answered quantum problems, each with the angles (gammas then betas), depth
    and stored shape label its main run reached, for the candidate ``backend_spec``.

    ``artifacts``: the home's template store, used where the worker sees it (one machine);
    elsewhere the worker compiles the candidate's templates in memory.
    """

    problems: tuple[WorkItem, ...]
    angles: tuple[tuple[float, ...], ...]
    reps: tuple[int, ...]
    shape_keys: tuple[str | None, ...]
    backend_spec: str
    max_qubits: int
    seed: int
    policy: CallPolicy
    artifacts: Path | None = None


@dataclass(frozen=True)
class CanaryResult:
    """The candidate's answers, the seconds of the task, and the problems it could not take."""

    answers: tuple[Answer, ...]
    seconds: float
    skipped: dict[str, str] = field(default_factory=dict)  # problem id -> why_not


def run_canary(task: CanaryTask) -> CanaryResult:
    """The task's problems on the candidate, grouped by the template each runs on there."""
    backend = get_backend(task.backend_spec, task.max_qubits)
    skipped: dict[str, str] = {}
    groups: dict[ShapeKey, list[int]] = defaultdict(list)
    for index, item in enumerate(task.problems):
        why = backend.target.why_not(item.formulation.ising.n)
        if why is not None:
            skipped[item.problem_id] = why
            continue
        shape = rerun_shape(item.formulation, task.reps[index], task.shape_keys[index], backend)
        groups[shape].append(index)
    answers: list[Answer] = []
    seconds = 0.0
    for shape, indices in groups.items():
        result = replay_chunk(
            ReplayTask(
                template=_template(shape, backend, task.artifacts),
                problems=tuple(task.problems[i] for i in indices),
                angles=tuple(task.angles[i] for i in indices),
                backend_spec=task.backend_spec,
                max_qubits=task.max_qubits,
                seed=task.seed,
                policy=task.policy,
            )
        )
        answers += result.answers
        seconds += result.seconds
    return CanaryResult(tuple(answers), seconds, skipped)


@lru_cache(maxsize=32)
def _template(shape: ShapeKey, backend: Backend, artifacts: Path | None) -> PackedTemplate:
    """The candidate's template of ``shape``, once per worker process: from the home's store
    where this worker sees the home, else compiled here (a remote worker has no home)."""
    if artifacts is not None and artifacts.parent.is_dir():
        return PackedTemplate.pack(TemplateStore(artifacts).get(shape, backend).template)
    return PackedTemplate.pack(compile_template(shape, backend, artifact_key(shape, backend)))
