"""Trust-region Newton refinement of QAOA angles, every running problem in one call.

Finite differences of the exact expectation give each problem's gradient and curvature; a
step is kept only if it lowers the energy, and each problem stops on its own when its
Newton model promises no worthwhile decrease or its trust radius collapses.
"""

from __future__ import annotations

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
    batch, reps = gammas.shape  # row r of the arrays is problem problems[r]
    theta = np.concatenate([gammas, betas], axis=1)
    dims = theta.shape[1]
    full = stencil(dims)
    axes = full[: 2 * dims + 1]
    curvature = np.zeros((batch, dims, dims))
    measured = np.zeros(batch, dtype=bool)  # has a full (or hinted) Hessian
    if hint is not None:
        curvature[:] = hint
        measured[:] = True
    best_energy = energy.copy()
    best_theta = theta.copy()
    radius = np.full(batch, INITIAL_RADIUS)
    running = np.ones(batch, dtype=bool)
    for _ in range(max_iterations):
        rows = np.flatnonzero(running)
        if rows.size == 0:
            break
        for cheap in (True, False):
            group = rows[measured[rows] == cheap]
            if group.size == 0:
                continue
            offsets = axes if cheap else full
            points = theta[group, None, :] + offsets[None, :, :]
            values = engine.energies(problems[group], points[:, :, :reps], points[:, :, reps:])
            centre, gradient, hessian = derivatives(
                values, dims, curvature[group] if cheap else None
            )
            accepted = centre <= best_energy[group]
            # Rejected: return to the best point and shrink; accepted: remember it and grow.
            best_energy[group] = np.where(accepted, centre, best_energy[group])
            best_theta[group] = np.where(accepted[:, None], theta[group], best_theta[group])
            radius[group] = np.where(
                accepted, np.minimum(radius[group] * 2, MAX_RADIUS), radius[group] / 4
            )
            theta[group] = best_theta[group]
            for position, b in enumerate(group):
                if not accepted[position]:
                    measured[b] = hint is not None  # the model failed: measure it afresh
                    continue
                g, H = gradient[position], hessian[position]
                curvature[b] = H
                measured[b] = True
                step = newton_step(g, H, radius[b])
                predicted = -(g @ step + 0.5 * step @ H @ step)
                if predicted < max(DECREASE_TOLERANCE, STEP_PAYS * abs(best_energy[b])):
                    running[b] = False  # converged: the next step would not pay for itself
                theta[b] = best_theta[b] + step
        running[rows] &= radius[rows] > MIN_RADIUS
    return best_theta[:, :reps], best_theta[:, reps:], best_energy, curvature


def newton_step(gradient: FloatArray, hessian: FloatArray, radius: float) -> FloatArray:
    """Regularised Newton step, clipped to the trust radius (a descent step even if H is indefinite)."""
    eigenvalues = np.linalg.eigvalsh(hessian)
    shift = max(0.0, -float(eigenvalues.min()) + 1e-3)
    step = np.asarray(
        -np.linalg.solve(hessian + shift * np.eye(len(gradient)), gradient), dtype=np.float64
    )
    length = float(np.linalg.norm(step))
    return step * (radius / length) if length > radius else step
