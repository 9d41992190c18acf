"""Planning: each claim formulated once, then grouped into batches: by shape where the
quantum route is open to them (by kind where a problem rule refused it), cut at the size
limit (a run's: each group's by expected compute, :mod:`batching.batch_sizes`).

Pure functions over plain data, so the invariants (every problem in exactly one batch,
no batch over the limit, one shape per quantum batch) are easy to test.

Where the backend is simulated exactly, or packs problems side by side on a device,
problems of one kind, size and depth share a pool shape whatever their graphs
(:func:`~pipeline.qaoa.shapes.batch_shape`); within a pool, problems of one angle class
(degree sequence) are kept together, so a batch of one class starts from that class's
angles.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence

from batching.batch_sizes import BatchSizes
from batching.batches import PlannedBatch, PlannedProblem
from batching.rules import ProblemFacts, Refusal, problem_refusal
from batching.sizing import even_cuts
from pipeline.backends import Backend
from pipeline.config import Settings
from pipeline.formulation import formulate
from pipeline.intake.types import ClaimedProblem
from pipeline.model import spec_from_json
from pipeline.qaoa.angles import degree_sequence
from pipeline.qaoa.device import device_run
from pipeline.qaoa.evaluators import uses_fast_path
from pipeline.qaoa.shapes import ShapeKey, batch_shape
from pipeline.reference import known_instance

Member = tuple[PlannedProblem, str, Refusal | None]  # the problem, why its route, refusal
# A group's batches, as positions in the group: how a run cuts it (batching.batch_sizes).
Cutter = Callable[[ShapeKey | None, Sequence[PlannedProblem]], Sequence[Sequence[int]]]


def new_batch_id() -> str:
    return f"b-{secrets.token_hex(8)}"


def plan_batches(
    problems: Sequence[PlannedProblem],
    backend: str,
    why_not: Callable[[int], str | None],
    max_batch_size: int | Cutter,
    pooled: Callable[[int], bool] | None = None,
) -> list[PlannedBatch]:
    """Apply the problem rules, group the problems quantum is open to by shape and the others
    by kind, then cut each group into batches: with a number, as few as that size limit
    allows, their sizes at most one apart; with a :data:`Cutter`, as it says (a run's:
    :class:`~batching.batch_sizes.BatchSizes`, by expected compute).

    ``why_not(n_qubits)`` is the backend's reason a problem of that size cannot run on it;
    ``pooled(n_qubits)`` whether the backend is simulated exactly at that size, so that
    problems of that size may share a batch whatever their graphs (``None``: never).
    """
    groups: dict[tuple[ShapeKey | None, str], list[Member]] = defaultdict(list)
    for problem in problems:
        ising = problem.formulation.ising
        refused = problem_refusal(ProblemFacts(problem.spec.route, why_not(ising.n)))
        if refused is not None:
            groups[(None, problem.spec.kind)].append((problem, refused.message, refused))
            continue
        shape = batch_shape(ising, problem.reps, backend, pooled is not None and pooled(ising.n))
        part = _pool_part(problem) if shape.pooled else ""
        groups[(shape, part)].append((problem, f"fits {backend} ({ising.n} qubits)", None))
    cut = (
        (lambda _, group: even_cuts(len(group), max_batch_size))
        if isinstance(max_batch_size, int)
        else max_batch_size
    )
    batches: list[PlannedBatch] = []
    for (group, _), members in sorted(groups.items(), key=lambda item: _sort_key(item[0])):
        ordered = _by_class(members) if group is not None and group.pooled else members
        for positions in cut(group, [p for p, _, _ in ordered]):
            batches.append(_batch(group, [ordered[i] for i in positions]))
    return batches


def _batch(shape: ShapeKey | None, members: Sequence[Member]) -> PlannedBatch:
    reasons = sorted({reason for _, reason, _ in members})
    more = f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""
    fallbacks = {p.problem_id: f for p, _, r in members if r and (f := r.fallback())}
    return PlannedBatch(
        batch_id=new_batch_id(),
        shape=shape,
        problems=tuple(problem for problem, _, _ in members),
        route_reason="; ".join(reasons[:3]) + more,
        fallbacks=fallbacks,
    )


def _pool_part(problem: PlannedProblem) -> str:
    """What splits a pool: its kind (a batch's angles come from one kind's classes), and
    whether a deadline is set. A pool joins problems that never shared a batch before, and
    a batch's earliest deadline decides its route, so a problem with a deadline must not
    send problems without one to the classical solver."""
    return f"{problem.spec.kind}{'/deadline' if problem.spec.deadline is not None else ''}"


def _by_class(members: list[Member]) -> list[Member]:
    """A pool's problems with each angle class (degree sequence) together, the largest
    classes first (most likely to fill batches of their own), each in arrival order."""
    classes: dict[str, list[Member]] = defaultdict(list)
    for member in members:
        ising = member[0].formulation.ising
        classes[degree_sequence(ising.n, ising.pairs)].append(member)
    ordered = sorted(classes.values(), key=len, reverse=True)  # stable: ties keep arrival
    return [member for group in ordered for member in group]


def _sort_key(key: tuple[ShapeKey | None, str]) -> tuple[str, str, str]:
    """Classical groups first, by kind; then quantum ones by shape (the order batches have
    always been planned in)."""
    shape, part = key
    return ("quantum", shape.label, part) if shape is not None else ("classical", "", part)


def plan_claims(
    claims: Sequence[ClaimedProblem], backend: Backend, settings: Settings
) -> tuple[list[ClaimedProblem], list[PlannedBatch]]:
    """Claims past their attempt limit, and the rest planned into batches."""
    limit = settings.intake.max_attempts
    exhausted = [c for c in claims if c.attempts > limit]
    planned = [_planned(c, settings) for c in claims if c.attempts <= limit]
    run = device_run(backend, settings.quantum)
    packing = run is not None and run.packing  # a device packs problems of any graph together
    batches = plan_batches(
        planned,
        backend.name,
        backend.target.why_not,
        BatchSizes(backend, settings),
        pooled=lambda n: packing or uses_fast_path(backend, n),
    )
    return exhausted, batches


def _planned(claim: ClaimedProblem, settings: Settings) -> PlannedProblem:
    spec = spec_from_json(claim.spec_json)
    return PlannedProblem(
        problem_id=claim.id,
        key=claim.key,
        spec=spec,
        formulation=formulate(spec),
        input_hash=claim.input_hash,
        attempts=claim.attempts,
        submitted_at=claim.submitted_at,
        claimed_at=claim.claimed_at,
        reps=spec.reps or settings.quantum.default_reps,
        shots=spec.shots or settings.quantum.default_shots,
        trace_id=claim.trace_id,
        supersedes=claim.supersedes,
        known_instance=known_instance(claim.input_hash),
    )
