"""Trust-region Newton refinement of QAOA angles, every running problem in one call.

Finite differences of the exact expectation give each problem's gradient and curvature; a
step is kept only if it lowers the energy, and each problem stops on its own when its
Newton model promises no worthwhile decrease or its trust radius collapses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.qaoa.evaluators import Evaluator

FloatArray = npt.NDArray[np.float64]

FD_STEP = 1e-3
INITIAL_RADIUS = 0.1
MAX_RADIUS = 0.5
MIN_RADIUS = 1e-4
DECREASE_TOLERANCE = 1e-7  # in units of the normalised energy (RMS weight = 1)
# A Newton step pays when its model promises at least this fraction of the energy: about
# 1e-4 of the expectation ratio, far below what sampling or a device's noise could show.
STEP_PAYS = 1e-4


def stencil(dims: int) -> FloatArray:
    """Offsets for a centre, central first differences and mixed second differences."""
    unit = np.eye(dims)
    rows = [np.zeros(dims)]
    rows += [FD_STEP * unit[i] for i in range(dims)] + [-FD_STEP * unit[i] for i in range(dims)]
    for i in range(dims):
        for j in range(i + 1, dims):
            for si in (1, -1):
                for sj in (1, -1):
                    rows.append(FD_STEP * (si * unit[i] + sj * unit[j]))
    return np.array(rows)


def derivatives(
    values: FloatArray, dims: int, hint: FloatArray | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Energy, gradient and Hessian per problem from energies on the stencil.

    With a ``hint`` (one Hessian per problem, (rows, dims, dims)) only the axis points
    were evaluated: the diagonal curvature is measured and the mixed terms come from it.
    """
    centre = values[:, 0]
    plus, minus = values[:, 1 : dims + 1], values[:, dims + 1 : 2 * dims + 1]
    gradient = (plus - minus) / (2 * FD_STEP)
    hessian = np.zeros((len(values), dims, dims)) if hint is None else hint.copy()
    diagonal = (plus - 2 * centre[:, None] + minus) / FD_STEP**2
    hessian[:, np.arange(dims), np.arange(dims)] = diagonal
    if hint is not None:
        return centre, gradient, hessian
    column = 2 * dims + 1
    for i in range(dims):
        for j in range(i + 1, dims):
            pp, pm, mp, mm = (values[:, column + k] for k in range(4))
            hessian[:, i, j] = hessian[:, j, i] = (pp - pm - mp + mm) / (4 * FD_STEP**2)
            column += 4
    return centre, gradient, hessian


def refine(
    engine: Evaluator,
    problems: npt.NDArray[np.intp],
    gammas: FloatArray,
    betas: FloatArray,
    energy: FloatArray,
    max_iterations: int,
    hint: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Trust-region Newton steps from finite differences; every running problem in one call.

    The first step measures the full Hessian (9 evaluations at p=1, 33 at p=2) unless a
    ``hint`` gives its mixed terms; later steps measure only the gradient and the diagonal
    (2p * 2 + 1 evaluations) and keep the mixed terms of the last full measurement. A step
    is kept only if it lowers the energy; each problem stops on its own when its Newton
    model promises less than ``STEP_PAYS`` of its energy (the step no longer pays) or its
    trust radius collapses.
    """
    reps = gammas.shape[1]  # row r of the arrays is problem problems[r]
    region = _TrustRegion.start(np.concatenate([gammas, betas], axis=1), energy, hint)
    full = stencil(2 * reps)
    axes = full[: 4 * reps + 1]
    for _ in range(max_iterations):
        rows = np.flatnonzero(region.running)
        if rows.size == 0:
            break
        for cheap in (True, False):  # a Hessian already measured: the axes alone
            group = rows[region.measured[rows] == cheap]
            if group.size:
                known = region.curvature[group] if cheap else None
                centre, gradient, hessian = _measure(
                    engine, problems[group], region.theta[group], axes if cheap else full, known
                )
                accepted = region.judge(group, centre)
                region.step(group, accepted, gradient, hessian)
        region.running[rows] &= region.radius[rows] > MIN_RADIUS
    best = region.best_theta
    return best[:, :reps], best[:, reps:], region.best_energy, region.curvature


@dataclass
class _TrustRegion:
    """Each problem's place in the refinement, row by row: where it is evaluated next, its
    best point so far, its trust radius, its last measured Hessian, and whether it runs."""

    theta: FloatArray
    best_theta: FloatArray
    best_energy: FloatArray
    radius: FloatArray
    curvature: FloatArray
    measured: npt.NDArray[np.bool_]  # has a full (or hinted) Hessian
    running: npt.NDArray[np.bool_]
    hinted: bool

    @classmethod
    def start(cls, theta: FloatArray, energy: FloatArray, hint: FloatArray | None) -> _TrustRegion:
        batch, dims = theta.shape
        curvature = np.zeros((batch, dims, dims))
        measured = np.zeros(batch, dtype=bool)
        if hint is not None:
            curvature[:] = hint
            measured[:] = True
        return cls(
            theta,
            theta.copy(),
            energy.copy(),
            np.full(batch, INITIAL_RADIUS),
            curvature,
            measured,
            np.ones(batch, dtype=bool),
            hint is not None,
        )

    def judge(self, group: npt.NDArray[np.intp], centre: FloatArray) -> npt.NDArray[np.bool_]:
        """Keep each point that lowers the energy and grow its radius; otherwise return to
        the best point and shrink. Which were kept."""
        accepted = centre <= self.best_energy[group]
        self.best_energy[group] = np.where(accepted, centre, self.best_energy[group])
        self.best_theta[group] = np.where(
            accepted[:, None], self.theta[group], self.best_theta[group]
        )
        self.radius[group] = np.where(
            accepted, np.minimum(self.radius[group] * 2, MAX_RADIUS), self.radius[group] / 4
        )
        self.theta[group] = self.best_theta[group]
        return accepted

    def step(
        self,
        group: npt.NDArray[np.intp],
        accepted: npt.NDArray[np.bool_],
        gradient: FloatArray,
        hessian: FloatArray,
    ) -> None:
        """From each kept point, the Newton step within its radius, unless it would not pay
        for itself (the problem stops); where the model failed, measure it afresh."""
        for position, b in enumerate(group):
            if not accepted[position]:
                self.measured[b] = self.hinted  # the model failed: measure it afresh
                continue
            g, H = gradient[position], hessian[position]
            self.curvature[b] = H
            self.measured[b] = True
            step = newton_step(g, H, self.radius[b])
            predicted = -(g @ step + 0.5 * step @ H @ step)
            if predicted < max(DECREASE_TOLERANCE, STEP_PAYS * abs(self.best_energy[b])):
                self.running[b] = False  # converged: the next step would not pay for itself
            self.theta[b] = self.best_theta[b] + step


def _measure(
    engine: Evaluator,
    problems: npt.NDArray[np.intp],
    theta: FloatArray,
    offsets: FloatArray,
    known: FloatArray | None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Energy, gradient and Hessian of each problem at its point ``theta``, in one call: on
    the full stencil, or on its axes with the ``known`` Hessians' mixed terms."""
    reps = theta.shape[1] // 2
    points = theta[:, None, :] + offsets[None, :, :]
    values = engine.energies(problems, points[:, :, :reps], points[:, :, reps:])
    return derivatives(values, theta.shape[1], known)


def newton_step(gradient: FloatArray, hessian: FloatArray, radius: float) -> FloatArray:
    """Regularised Newton step, clipped to the trust radius (a descent step even if H is indefinite)."""
    eigenvalues = np.linalg.eigvalsh(hessian)
    shift = max(0.0, -float(eigenvalues.min()) + 1e-3)
    step = np.asarray(
        -np.linalg.solve(hessian + shift * np.eye(len(gradient)), gradient), dtype=np.float64
    )
    return within(step, radius)


def within(step: FloatArray, radius: float) -> FloatArray:
    """``step`` shortened to ``radius`` where it is longer."""
    length = float(np.linalg.norm(step))
    return step * (radius / length) if length > radius else step
