"""What sets a weighted problem's optimal angles apart from its class's: a few numbers each.

Problems of one class with RMS-normalised weights have nearly the same optimal angles, but
not quite: heavy-tailed weights (exponential) move each problem's optimum by more than
taking the class's mean optimum can afford. What moves it is read off the problem itself,
classically and without an evaluation: the mean |J| of its couplings, the mean product of
the couplings of adjacent edges, and its own depth-1 optimum (gamma1*, beta1*, with the
energy and its curvature there), which carries its neighbourhoods and triangles. A class's followers fit a linear model from
these to their optima (:mod:`pipeline.qaoa.angle_model`).

The depth-1 energy has a closed form for a cost with no linear field (Wang, Hadfield,
Jiang and Rieffel, PRA 97, 022304, 2018, for weighted couplings), in this project's
convention (state exp(-i beta sum X) exp(-i gamma C)|+>, C = sum J_uv Z_u Z_v):

    <Z_u Z_v> = 1/2 sin 4b sin(2g J_uv) [prod_{w != v} cos 2g J_uw + prod_{w != u} cos 2g J_vw]
              - 1/2 sin^2 2b [prod_{w != u,v} cos 2g (J_uw + J_vw) - prod cos 2g (J_uw - J_vw)]

so E1(g, b) = A(g) sin 4b + C(g) sin^2 2b, minimised over b in closed form, over g on a grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pipeline.kinds.forms import Ising
from pipeline.qaoa.evaluators import weight_scale

FloatArray = npt.NDArray[np.float64]

FEATURES = ("mean |J|", "adjacent |J J|", "gamma1*", "beta1*", "E1* per edge", "E1'' / |E1*|")
GAMMA_GRID = np.linspace(0.02, 1.2, 80)  # where a normalised problem's depth-1 optimum lies
BEND_STEP = 0.02  # the gamma step of the depth-1 curvature's central difference
TYPICAL_AMONG = 64  # how many of a batch's problems a choice of its most typical reads


def couplings(n_qubits: int, pairs: Sequence[tuple[int, int]], J: FloatArray) -> FloatArray:
    """Each problem's symmetric coupling matrix (problems, n, n) from its pair weights."""
    matrix = np.zeros((len(J), n_qubits, n_qubits))
    if pairs:
        u, v = np.asarray(pairs).T
        matrix[:, u, v] = J
        matrix[:, v, u] = J
    return matrix


def depth_one_terms(matrix: FloatArray, gammas: FloatArray) -> tuple[FloatArray, FloatArray]:
    """A(g) and C(g) of each problem (problems, G): E1 = A sin 4b + C sin^2 2b, at gammas
    (G,) shared by every problem or (problems, G) of its own."""
    count, n, _ = matrix.shape
    grid = np.atleast_2d(gammas)
    two_g = 2 * grid[:, :, None]
    A = np.zeros((count, grid.shape[1]))
    C = np.zeros((count, grid.shape[1]))
    for u, v in zip(*np.nonzero(np.triu(np.abs(matrix).max(axis=0))), strict=True):
        weight = matrix[:, u, v][:, None]
        rest = [w for w in range(n) if w not in (u, v)]
        at_u, at_v = matrix[:, u, rest][:, None, :], matrix[:, v, rest][:, None, :]
        both = np.cos(two_g * at_u).prod(axis=2) + np.cos(two_g * at_v).prod(axis=2)
        sides = np.cos(two_g * (at_u + at_v)).prod(axis=2) - np.cos(two_g * (at_u - at_v)).prod(
            axis=2
        )
        A += 0.5 * weight * np.sin(2 * grid * weight) * both
        C -= 0.5 * weight * sides
    return A, C


def depth_one_optimum(matrix: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each problem's depth-1 optimum (gamma, beta) and energy there: beta in closed form
    for every gamma of the grid, gamma at the vertex of a parabola through the grid's best
    three (the grid's best where the parabola opens downward)."""
    A, C = depth_one_terms(matrix, GAMMA_GRID)
    energy = C / 2 - np.sqrt(A**2 + C**2 / 4)
    rows = np.arange(len(matrix))
    best = np.clip(energy.argmin(axis=1), 1, len(GAMMA_GRID) - 2)
    left, mid, right = energy[rows, best - 1], energy[rows, best], energy[rows, best + 1]
    bend = left - 2 * mid + right
    step = GAMMA_GRID[1] - GAMMA_GRID[0]
    offset = np.where(bend > 0, 0.5 * (left - right) / np.where(bend > 0, bend, 1.0), 0.0)
    gamma = GAMMA_GRID[best] + np.clip(offset, -1.0, 1.0) * step
    A1, C1 = (t[:, 0] for t in depth_one_terms(matrix, gamma[:, None]))
    beta = np.arctan2(-A1, C1 / 2) / 4
    return gamma, beta, C1 / 2 - np.sqrt(A1**2 + C1**2 / 4)


def features(n_qubits: int, pairs: Sequence[tuple[int, int]], J: FloatArray) -> FloatArray:
    """(problems, len(FEATURES)): mean |J| over each problem's nonzero couplings, mean
    |J_e J_f| over its pairs of nonzero couplings sharing a qubit, its depth-1 optimum
    (gamma, beta), the energy there per coupling and the energy's relative curvature along
    gamma there. On exponential weights, the last two took the prediction's loss against
    each problem's p=2 ceiling from 0.0065 to 0.0057 of expectation ratio (and 0.0046 to
    0.0039, 0.0047 to 0.0044 on two more pairs of graphs)."""
    matrix = couplings(n_qubits, pairs, J)
    weights = np.abs(matrix)
    present = weights > 0
    mean_abs = weights.sum(axis=(1, 2)) / np.maximum(present.sum(axis=(1, 2)), 1)
    # sum over qubits of (sum of its |J|)^2 - sum |J|^2: every ordered adjacent pair once
    at_qubit = weights.sum(axis=2)
    adjacent = (at_qubit**2 - (weights**2).sum(axis=2)).sum(axis=1)
    degree = present.sum(axis=2)
    adjacent_pairs = (degree * (degree - 1)).sum(axis=1)
    adjacency = adjacent / np.maximum(adjacent_pairs, 1)
    gamma, beta, energy = depth_one_optimum(matrix)
    edges = np.maximum(present.sum(axis=(1, 2)) / 2, 1)
    return np.column_stack(
        [mean_abs, adjacency, gamma, beta, energy / edges, _bend(matrix, gamma, energy)]
    )


def _bend(matrix: FloatArray, gamma: FloatArray, energy: FloatArray) -> FloatArray:
    """The curvature along gamma of the depth-1 energy (at each gamma's best beta) at its
    optimum, relative to the energy there: how sharply the problem's optimum is defined."""
    A, C = depth_one_terms(matrix, np.column_stack([gamma - BEND_STEP, gamma + BEND_STEP]))
    envelope = C / 2 - np.sqrt(A**2 + C**2 / 4)
    bend = (envelope[:, 0] + envelope[:, 1] - 2 * energy) / BEND_STEP**2
    return np.asarray(bend / np.maximum(np.abs(energy), 1e-12))


def most_typical(isings: Sequence[Ising], count: int) -> list[int]:
    """The indices of the ``count`` problems whose features lie nearest the others' mean
    (Mahalanobis distance), among the first ``TYPICAL_AMONG``: pilots whose optimum lies
    near their class's centre. On exponential-weight 12-node 3-regular MaxCut, one pilot
    drawn at random left its 99 followers 0.0023-0.0262 of expectation ratio under the p=2
    ceiling (15 draws, mean 0.0064: some pilots' optima lie in another basin); the most
    typical of 50, 0.0021-0.0043 (mean 0.0030)."""
    among = list(isings[:TYPICAL_AMONG])
    if len(among) <= count:
        return list(range(len(among)))
    # One call for all: every pair any of them has (a pool's problems have their own graphs),
    # weighing 0 where a problem has no such pair.
    pairs = sorted({pair for ising in among for pair in ising.pairs})
    column = {pair: index for index, pair in enumerate(pairs)}
    J = np.zeros((len(among), len(pairs)))
    for row, ising in enumerate(among):
        J[row, [column[pair] for pair in ising.pairs]] = ising.J / weight_scale(ising.h, ising.J)
    found = features(among[0].n, pairs, J)
    offsets = found - found.mean(axis=0)
    precision = np.linalg.pinv(np.cov(found, rowvar=False))
    distance = np.einsum("ij,jk,ik->i", offsets, precision, offsets)
    return sorted(np.argsort(distance, kind="stable")[:count].tolist())
