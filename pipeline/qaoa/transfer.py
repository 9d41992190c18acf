"""What a problem spends after taking another problem's optimal angles (transfer).

Problems of one class with RMS-normalised weights have nearly the same optimal angles, so
a problem that starts at its class's pilots' optimum refines only as much as transfer is
shown to lose: nothing, or one Newton step on the pilots' curvature; within a batch that
runs its own pilots, a line search along the gammas or Newton steps (``pipeline.qaoa.starts``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipeline.qaoa.angle_model import PROBE, AngleModel, ModelSamples
from pipeline.qaoa.angles import AnglePlan, TransferCheck
from pipeline.qaoa.evaluators import Evaluator
from pipeline.qaoa.features import features
from pipeline.qaoa.refine import (
    FD_STEP,
    INITIAL_RADIUS,
    MAX_RADIUS,
    newton_step,
    refine,
    within,
)
from pipeline.vocabulary import RefineMode

FloatArray = npt.NDArray[np.float64]

FAR_OFF = 3e-2  # a problem whose one step gained this much refines on
# A chunk of at least twice this many followers steps in two stages: the first this many
# from the class's angles, the rest from a model fitted on where the first ones' optima lie
# (a step from closer by puts the Newton model's optimum closer to the true one).
STAGE = 20
NEWTON_SHARE = 0.2  # of a chunk following a class model: one Newton step each
LINE_SHARE = 0.5  # one line search each
GAMMA_PROBE = 0.05  # relative change of the gammas that measures a problem's slope along them


def follow(
    engine: Evaluator, count: int, max_iterations: int, plan: AnglePlan
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], TransferCheck | None]:
    """Angles for problems whose class's pilots already ran (``plan.shared``), each spending
    only what the class's measured loss warrants, and what following measured:

    - where an earlier run fitted the class's angle model: its prediction for each problem
      (:func:`from_model`), as it is where following is free (below), else corrected for
      2 evaluations a problem on average;
    - ``never``, or ``auto`` with the loss under ``plan.free_loss``: the shared angles as
      they are, no evaluation (the energy there is what sampling shows anyway);
    - with the pilots' curvature known: one Newton step each on a forward-difference
      gradient, 2p + 1 evaluations (:func:`step_from_shared`);
    - no curvature known: a full refinement from the shared angles.
    """
    shared = plan.shared
    assert shared is not None
    rows = np.arange(count)
    gammas = np.tile(np.asarray(shared.gammas), (count, 1))
    betas = np.tile(np.asarray(shared.betas), (count, 1))
    free = plan.refine is RefineMode.NEVER or (
        plan.refine is RefineMode.AUTO and shared.loss <= plan.free_loss
    )
    dims = 2 * shared.reps
    model = shared.model
    if model is not None and not np.any(engine.h) and len(model.direction) == dims:
        return from_model(engine, rows, model, free), None
    if free:
        return (gammas, betas, engine.untuned_energies(rows, np.hstack([gammas, betas]))), None
    if shared.curvature:
        hint = np.asarray(shared.curvature).reshape(dims, dims)
        return step_from_shared(engine, rows, np.hstack([gammas, betas]), hint)
    energy = engine.energies(rows, gammas[:, None, :].copy(), betas[:, None, :].copy())[:, 0]
    return refine(engine, rows, gammas, betas, energy, max_iterations)[:3], None


def problem_features(engine: Evaluator, rows: npt.NDArray[np.intp]) -> FloatArray:
    """The features of problems ``rows`` (pipeline.qaoa.features), from their weights."""
    shape = engine.template.shape
    return features(shape.n_qubits, shape.pairs, engine.J[rows])


def from_model(
    engine: Evaluator, rows: npt.NDArray[np.intp], model: AngleModel, free: bool
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each problem from the class model's prediction: as it is where following is ``free``
    (the class is confirmed), else for 2 evaluations a problem on average:

    - the ``NEWTON_SHARE`` whose features lie farthest from those the model was fitted on
      take one Newton step (2p + 1, within ``INITIAL_RADIUS``);
    - the next ``LINE_SHARE`` one line search along the model's direction (2);
    - the rest take the prediction as it is (0).

    Measured on exponential-weight 12-node 3-regular MaxCut over three pairs of graphs (the
    model fitted on one, used on the other): 0.0030-0.0044 of expectation ratio under each
    problem's p=2 ceiling, where the prediction alone lost 0.0039-0.0057 and one line
    search each 0.0032-0.0047. Shifting every problem by the Newton steps' mean (this
    graph's offset from the model) lost more on uniform weights: the riskiest problems'
    steps are no sample of the rest."""
    found = problem_features(engine, rows)
    moved = model.predict(found)
    if not free:
        order = np.argsort(-model.risk(found), kind="stable")
        newton = order[: int(NEWTON_SHARE * len(rows))]
        line = order[len(newton) : len(newton) + round(LINE_SHARE * len(rows))]
        if newton.size:
            moved[newton] = _newton_steps(engine, rows[newton], moved[newton], model.hessian)[0]
        if line.size:
            moved[line] = _line_search(engine, rows[line], moved[line], model)
    reps = moved.shape[1] // 2
    return moved[:, :reps].copy(), moved[:, reps:].copy(), engine.untuned_energies(rows, moved)


def _line_search(
    engine: Evaluator, rows: npt.NDArray[np.intp], theta: FloatArray, model: AngleModel
) -> FloatArray:
    """Each problem moved along the model's direction to the minimum of a parabola through
    its slope there (energies at +-``PROBE``) and the class's curvature along it."""
    direction = np.asarray(model.direction)
    reps = theta.shape[1] // 2
    points = theta[:, None, :] + np.array([PROBE, -PROBE])[None, :, None] * direction
    values = engine.energies(rows, points[:, :, :reps].copy(), points[:, :, reps:].copy())
    slope = (values[:, 0] - values[:, 1]) / (2 * PROBE)
    curvature = float(direction @ model.hessian @ direction)
    if curvature > 0:
        moves = np.clip(-slope / curvature, -INITIAL_RADIUS, INITIAL_RADIUS)
    else:
        moves = np.where(values[:, 0] < values[:, 1], PROBE, -PROBE)
    return np.asarray(theta + moves[:, None] * direction)


def step_from_shared(
    engine: Evaluator, rows: npt.NDArray[np.intp], theta: FloatArray, hessian: FloatArray
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], TransferCheck | None]:
    """One Newton step per problem from the shared angles ``theta`` (one row each), on a
    forward-difference gradient and the pilots' curvature, within ``INITIAL_RADIUS``: 2p + 1
    evaluations, the step taken unchecked where the class has no linear field (where it has
    one, checked: 2p + 2, kept only where it lowers the energy). Measured on 12-node
    3-regular MaxCut with weights of four laws, the unchecked step never lost against the
    shared angles and left 0.0001-0.003 of expectation ratio where they lost 0.003-0.011.
    Where the evaluator knows the energies after the step for free (the answers'
    expectations need them anyway), the optima the Newton model puts each problem at
    measure the class (:func:`spread`; with fields, what the checked steps gained:
    :func:`_checked_step`). Without fields the steps go in two stages (:func:`_staged_steps`)."""
    if not np.any(engine.h[rows]):
        return _staged_steps(engine, rows, theta, hessian)
    moved, _, before, _ = _newton_steps(engine, rows, theta, hessian)
    return _checked_step(engine, rows, theta, moved, before)


def _staged_steps(
    engine: Evaluator, rows: npt.NDArray[np.intp], theta: FloatArray, hessian: FloatArray
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], TransferCheck | None]:
    """Unchecked steps (no linear field), in two stages where the chunk has at least 2
    ``STAGE`` problems, the second from a model fitted on the first's optima (no evaluation
    more); the check carries the problems' features and optima, samples for the class's
    angle model, from the stages whose start was centred on their optima
    (:func:`_centred`). A first stage that was not (the pilot found another basin than
    its followers') leaves no samples, and the second starts from its optima's mean."""
    found = problem_features(engine, rows)
    stages = [np.arange(len(rows))]
    if len(rows) >= 2 * STAGE:
        stages = [np.arange(STAGE), np.arange(STAGE, len(rows))]
    start, moved, optima = theta.copy(), theta.copy(), theta.copy()
    energy = np.empty(len(rows))
    trusted = np.ones(len(rows), dtype=bool)
    for index, stage in enumerate(stages):
        if index:
            _restart(stage, stages[index - 1], found, (start, optima, trusted), hessian)
        moved[stage], full, _, energy[stage] = _newton_steps(
            engine, rows[stage], start[stage], hessian
        )
        # Where each problem's optimum lies by the Newton model, not where its step stopped:
        # a step cut to the radius leaves points crowded along one direction, the class
        # looking tighter than it is.
        optima[stage] = start[stage] + full
        trusted[stage] = _centred(full)
    known = np.isfinite(energy)
    check = spread(optima[known], energy[known], hessian) if known.sum() >= 2 else None
    if check is not None:
        sampled = _samples(found[trusted], optima[trusted])
        check = TransferCheck(check.problems, check.loss, sampled)
    reps = theta.shape[1] // 2
    return (moved[:, :reps].copy(), moved[:, reps:].copy(), energy), check


def _restart(
    stage: npt.NDArray[np.intp],
    before: npt.NDArray[np.intp],
    found: FloatArray,
    state: tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]],
    hessian: FloatArray,
) -> None:
    """Where a stage starts (``state``: every problem's start, optimum, whether its stage
    was centred; updated in place): from the model the stage ``before`` fits where it was
    centred, else from its optima's mean."""
    start, optima, trusted = state
    if not trusted[before].all():
        start[stage] = optima[before].mean(axis=0)
        return
    model = AngleModel.fit(_samples(found[before], optima[before]), hessian)
    if model is not None:
        start[stage] = model.predict(found[stage])


def _centred(steps: FloatArray) -> bool:
    """Whether a stage's Newton steps (their full length) are centred within
    ``INITIAL_RADIUS``: only then do their optima sample the class, the Newton model being
    good near where it was measured. On 8-node 3-regular exponential-weight MaxCut, a pilot
    in another basin put its followers' mean step at 0.18; the other pilots, 0.01-0.08."""
    return bool(np.linalg.norm(steps.mean(axis=0)) <= INITIAL_RADIUS)


def _samples(found: FloatArray, optima: FloatArray) -> ModelSamples:
    return ModelSamples(tuple(map(tuple, found.tolist())), tuple(map(tuple, optima.tolist())))


def _newton_steps(
    engine: Evaluator, rows: npt.NDArray[np.intp], theta: FloatArray, hessian: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """One Newton step per problem on a forward-difference gradient (2p + 1 evaluations):
    where each moved (within ``INITIAL_RADIUS``), its full Newton step, its energy before
    and (where the evaluator knows it for free; else NaN) after."""
    reps = theta.shape[1] // 2
    offsets = np.vstack([np.zeros(2 * reps), FD_STEP * np.eye(2 * reps)])
    points = theta[:, None, :] + offsets[None, :, :]
    values = engine.energies(rows, points[:, :, :reps].copy(), points[:, :, reps:].copy())
    gradient = (values[:, 1:] - values[:, :1]) / FD_STEP
    full = np.array([newton_step(g, hessian, np.inf) for g in gradient])
    moved = theta + np.array([within(step, INITIAL_RADIUS) for step in full])
    after = np.full(len(rows), np.nan)
    if not np.any(engine.h[rows]):
        after = engine.untuned_energies(rows, moved)
    return moved, full, values[:, 0], after


def _checked_step(
    engine: Evaluator,
    rows: npt.NDArray[np.intp],
    theta: FloatArray,
    moved: FloatArray,
    before: FloatArray,
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], TransferCheck]:
    """Linear fields move each problem's optimum and curvature (see starts.warm_start), so
    one pilot's curvature may mislead: each step is checked (one evaluation more) and kept
    only where it lowers the energy. What the steps gained (nothing where refused) is the
    class's measure here: the cloud of stepped angles is no sign of its spread when steps
    are refused, which leave their problems at the shared angles."""
    reps = theta.shape[1] // 2
    kept, energy = _keep_better(engine, rows, theta, before, moved)
    gains = (before - energy) / np.abs(energy)
    check = TransferCheck(len(rows), float(gains.mean()))
    return (kept[:, :reps].copy(), kept[:, reps:].copy(), energy), check


def _keep_better(
    engine: Evaluator,
    rows: npt.NDArray[np.intp],
    theta: FloatArray,
    energy: FloatArray,
    moved: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Each problem at ``moved`` where that lowers its energy below ``energy`` (its energy at
    ``theta``), else at ``theta``, with its energy there: one evaluation each."""
    reps = theta.shape[1] // 2
    new = engine.energies(rows, moved[:, None, :reps].copy(), moved[:, None, reps:].copy())[:, 0]
    better = new < energy
    return np.where(better[:, None], moved, theta), np.where(better, new, energy)


def spread(angles: FloatArray, energy: FloatArray, hessian: FloatArray) -> TransferCheck:
    """What taking one problem's optimum for another's loses in a class, from where its
    problems' optima lie (``angles``; their energies ``energy``): twice their mean
    quadratic-model loss at their centre, relative to their energy, with the centre's own
    bias corrected (n / (n - 1)). It reads the whole cloud, so no one pilot's luck sets it: on 12-node
    3-regular MaxCut, from the optima the Newton model puts the followers at, it gave
    0.012-0.020 under uniform and integer weights (where a pilot's angles lose 0.003 of
    expectation ratio) and 0.040-0.062 under exponential ones (0.011)."""
    count = len(angles)
    offsets = angles - angles.mean(axis=0)
    model = 0.5 * np.einsum("ij,jk,ik->i", offsets, hessian, offsets) / np.abs(energy)
    return TransferCheck(count, float(2 * model.mean() * count / (count - 1)))


def step_where_transfer_loses(
    engine: Evaluator,
    others: npt.NDArray[np.intp],
    angles: tuple[FloatArray, FloatArray, FloatArray],
    hint: FloatArray,
    max_iterations: int,
) -> None:
    """Transfer loses more than a step costs: one Newton step each, on a forward-difference
    gradient and the pilots' curvature (2p + 1 evaluations), kept only where it helps; where
    that step paid well (the transferred angles were far off), further steps may too, so
    those problems refine until a step no longer pays. Updates ``angles`` in place."""
    all_g, all_b, all_e = angles
    before = all_e[others].copy()
    all_g[others], all_b[others], all_e[others] = _one_step(
        engine, others, all_g[others], all_b[others], all_e[others], hint
    )
    paid = others[(before - all_e[others]) / np.abs(all_e[others]) > FAR_OFF]
    if paid.size:
        all_g[paid], all_b[paid], all_e[paid], _ = refine(
            engine, paid, all_g[paid], all_b[paid], all_e[paid], max_iterations, hint
        )


def gamma_line_search(
    engine: Evaluator,
    problems: npt.NDArray[np.intp],
    gammas: FloatArray,
    betas: FloatArray,
    hessian: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """From shared angles, each problem's best scale of the gammas: 3 evaluations each.

    Energies at gammas scaled by 1 +- ``GAMMA_PROBE`` give the slope along the gammas; the
    pilots' Hessian gives the curvature along them; the Newton point (at most
    ``MAX_RADIUS`` away) is the third evaluation, and each problem keeps the best of three.
    """
    reps = len(gammas)
    theta = np.concatenate([gammas, betas])
    direction = np.concatenate([gammas, np.zeros(reps)]) / np.linalg.norm(gammas)
    probe = GAMMA_PROBE * float(np.linalg.norm(gammas))
    curvature = float(direction @ hessian @ direction)
    points = theta + np.array([probe, -probe])[:, None] * direction
    values = engine.energies(
        problems,
        np.ascontiguousarray(np.broadcast_to(points[:, :reps], (len(problems), 2, reps))),
        np.ascontiguousarray(np.broadcast_to(points[:, reps:], (len(problems), 2, reps))),
    )
    slope = (values[:, 0] - values[:, 1]) / (2 * probe)
    if curvature > 0:
        moves = np.clip(-slope / curvature, -MAX_RADIUS, MAX_RADIUS)
    else:  # no usable curvature: the third point is the shared angles themselves
        moves = np.zeros(len(problems))
    moved = theta + moves[:, None] * direction
    third = engine.energies(problems, moved[:, None, :reps].copy(), moved[:, None, reps:].copy())
    tried = np.stack(
        [np.broadcast_to(points[0], moved.shape), np.broadcast_to(points[1], moved.shape), moved],
        axis=1,
    )
    energies = np.concatenate([values, third], axis=1)
    best = energies.argmin(axis=1)
    index = np.arange(len(problems))
    chosen = tried[index, best]
    return chosen[:, :reps].copy(), chosen[:, reps:].copy(), energies[index, best]


def _one_step(
    engine: Evaluator,
    problems: npt.NDArray[np.intp],
    gammas: FloatArray,
    betas: FloatArray,
    energy: FloatArray,
    hessian: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One Newton step per problem from a forward-difference gradient and a shared Hessian."""
    reps = gammas.shape[1]
    theta = np.concatenate([gammas, betas], axis=1)
    dims = theta.shape[1]
    offsets = FD_STEP * np.eye(dims)
    points = theta[:, None, :] + offsets[None, :, :]
    values = engine.energies(problems, points[:, :, :reps], points[:, :, reps:])
    gradient = (values - energy[:, None]) / FD_STEP
    moved = theta + np.array([newton_step(g, hessian, MAX_RADIUS) for g in gradient])
    kept, energy = _keep_better(engine, problems, theta, energy, moved)
    return kept[:, :reps], kept[:, reps:], energy
