"""An exact statevector simulator specialised to QAOA on diagonal cost functions.

All three problem kinds have a diagonal cost Hamiltonian, so one QAOA layer is a
pointwise phase ``exp(-i gamma E(x))`` followed by ``RX(2 beta)`` on every qubit. This
module precomputes each problem's energy diagonal once, then evaluates many angle sets
for many problems in one compiled (numba) call, with no circuit, no transpilation and
no per-call overhead. It computes exactly what the template circuit computes, and the
tests hold it to Aer's expectations within 1e-9; Aer stays the reference and the path
for anything noisy.

When a problem has few distinct energy levels (integer-weighted MaxCut has at most a
few hundred), the phase is computed once per level and gathered, which removes most of
the transcendental work.

When every cost is symmetric under flipping all bits, E(x) = E(~x) (any cost with no
linear field: MaxCut, QUBOs whose Ising form has h = 0), the QAOA state is too: |+>^n is,
the phase layer is, and the mixer commutes with the global flip. Then only the half of
the amplitudes with the top qubit 0 is kept: the top qubit's RX pairs x with x ^ top,
whose amplitude equals that of its complement, x with its low bits flipped, which is in
the kept half. Half the states, half the work, the same numbers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_QUBITS = 24


def spin_energies(n: int, h: FloatArray, pairs: list[tuple[int, int]], J: FloatArray) -> FloatArray:
    """E(x) = h.z + sum J z_i z_j for every basis state x (qubit k = bit k of the index)."""
    if n > MAX_QUBITS:
        raise ValueError(f"the fast simulator takes at most {MAX_QUBITS} qubits, not {n}")
    index = np.arange(2**n, dtype=np.int64)
    spins = 1.0 - 2.0 * ((index[:, None] >> np.arange(n)) & 1)  # (2^n, n), z = +1 for bit 0
    energy = spins @ h if len(h) else np.zeros(2**n)
    for (i, j), weight in zip(pairs, J, strict=True):
        energy = energy + weight * spins[:, i] * spins[:, j]
    return np.ascontiguousarray(energy, dtype=np.float64)


def energy_levels(diagonals: FloatArray) -> tuple[FloatArray, IntArray, IntArray]:
    """Per problem: its distinct energies (padded), the level of every state, and the level count."""
    count = len(diagonals)
    uniques = [np.unique(row, return_inverse=True) for row in diagonals]
    width = max(len(levels) for levels, _ in uniques)
    levels = np.zeros((count, width))
    inverse = np.zeros(diagonals.shape, dtype=np.int64)
    sizes = np.zeros(count, dtype=np.int64)
    for b, (values, where) in enumerate(uniques):
        levels[b, : len(values)] = values
        inverse[b] = where
        sizes[b] = len(values)
    return levels, inverse, sizes


@njit(cache=True, nogil=True)
def _mixer(re: FloatArray, im: FloatArray, n: int, c: float, s: float) -> None:  # pragma: no cover
    """RX(2 beta) on every qubit, two qubits per pass: half the sweeps over the state.

    One qubit: [[c, -is], [-is, c]]; two qubits: its Kronecker square, with entries
    c^2, -ics and -s^2.
    """
    states = 1 << n
    cc, ss, cs = c * c, s * s, c * s
    qubit = 0
    while qubit + 1 < n:
        low, high = 1 << qubit, 1 << (qubit + 1)
        for base in range(0, states, 2 * high):
            for a in range(base, base + low):
                b, d = a + low, a + high
                e = d + low
                ar, ai, br, bi = re[a], im[a], re[b], im[b]
                dr, di, er, ei = re[d], im[d], re[e], im[e]
                re[a] = cc * ar + cs * (bi + di) - ss * er
                im[a] = cc * ai - cs * (br + dr) - ss * ei
                re[b] = cc * br + cs * (ai + ei) - ss * dr
                im[b] = cc * bi - cs * (ar + er) - ss * di
                re[d] = cc * dr + cs * (ai + ei) - ss * br
                im[d] = cc * di - cs * (ar + er) - ss * bi
                re[e] = cc * er + cs * (bi + di) - ss * ar
                im[e] = cc * ei - cs * (br + dr) - ss * ai
        qubit += 2
    if qubit < n:
        stride = 1 << qubit
        for base in range(0, states, 2 * stride):
            for x in range(base, base + stride):
                y = x + stride
                ar, ai, dr, di = re[x], im[x], re[y], im[y]
                re[x] = c * ar + s * di
                im[x] = c * ai - s * dr
                re[y] = c * dr + s * ai
                im[y] = c * di - s * ar


@njit(cache=True, nogil=True)
def _mixer_top_of_symmetric(
    re: FloatArray, im: FloatArray, c: float, s: float
) -> None:  # pragma: no cover
    """RX(2 beta) on the top qubit of a flip-symmetric state kept as its lower half.

    The partner of x (top bit 0) is x with the top bit set, whose amplitude is that of
    ``x ^ low_mask``: the pairs are (x, complement of x within the half).
    """
    states = re.shape[0]
    low_mask = states - 1
    for x in range(states // 2):
        y = x ^ low_mask
        ar, ai, dr, di = re[x], im[x], re[y], im[y]
        re[x] = c * ar + s * di
        im[x] = c * ai - s * dr
        re[y] = c * dr + s * ai
        im[y] = c * di - s * ar


@njit(cache=True, nogil=True)
def _expectations(
    n: int,
    diagonals: FloatArray,
    levels: FloatArray,
    inverse: IntArray,
    sizes: IntArray,
    owner: IntArray,
    gammas: FloatArray,
    betas: FloatArray,
    symmetric: bool,
) -> FloatArray:  # pragma: no cover - compiled
    kept = n - 1 if symmetric else n  # qubits whose amplitudes are stored
    states = 1 << kept
    sets, reps = gammas.shape
    out = np.empty(sets)
    re = np.empty(states)
    im = np.empty(states)
    phase_re = np.empty(levels.shape[1])
    phase_im = np.empty(levels.shape[1])
    amplitude = 1.0 / np.sqrt(1 << n)
    weight_of_kept = 2.0 if symmetric else 1.0  # each kept state stands for itself and ~x
    for k in range(sets):
        b = owner[k]
        use_levels = sizes[b] * 2 <= states
        re[:] = amplitude
        im[:] = 0.0
        for layer in range(reps):
            gamma = gammas[k, layer]
            if use_levels:
                for level in range(sizes[b]):
                    phase_re[level] = np.cos(gamma * levels[b, level])
                    phase_im[level] = -np.sin(gamma * levels[b, level])
                for x in range(states):
                    level = inverse[b, x]
                    pr, pi = phase_re[level], phase_im[level]
                    r, i = re[x], im[x]
                    re[x] = r * pr - i * pi
                    im[x] = r * pi + i * pr
            else:
                for x in range(states):
                    angle = gamma * diagonals[b, x]
                    pr, pi = np.cos(angle), -np.sin(angle)
                    r, i = re[x], im[x]
                    re[x] = r * pr - i * pi
                    im[x] = r * pi + i * pr
            c, s = np.cos(betas[k, layer]), np.sin(betas[k, layer])
            _mixer(re, im, kept, c, s)
            if symmetric:
                _mixer_top_of_symmetric(re, im, c, s)
        total = 0.0
        for x in range(states):
            weight = re[x] * re[x] + im[x] * im[x]
            total += weight * diagonals[b, x]
        out[k] = weight_of_kept * total
    return out


class DiagonalQAOA:
    """Exact QAOA expectations for a batch of same-size problems given their energy diagonals."""

    def __init__(self, n: int, diagonals: FloatArray) -> None:
        self.n = n
        full = np.ascontiguousarray(diagonals, dtype=np.float64)
        half = full.shape[1] // 2
        # E(x) == E(~x) for every problem: ~x is the index read from the other end.
        self.symmetric = n > 1 and bool(np.array_equal(full[:, :half], full[:, ::-1][:, :half]))
        self.diagonals = np.ascontiguousarray(full[:, :half]) if self.symmetric else full
        self.levels, self.inverse, self.sizes = energy_levels(self.diagonals)

    def expectations(self, owner: IntArray, gammas: FloatArray, betas: FloatArray) -> FloatArray:
        """<E> for angle set k of problem ``owner[k]``; angles are (K, reps)."""
        return _expectations(
            self.n,
            self.diagonals,
            self.levels,
            self.inverse,
            self.sizes,
            np.ascontiguousarray(owner, dtype=np.int64),
            np.ascontiguousarray(gammas, dtype=np.float64),
            np.ascontiguousarray(betas, dtype=np.float64),
            self.symmetric,
        )


def warm_up() -> None:
    """Load (or compile, on a fresh checkout) the kernels with the argument types used above."""
    DiagonalQAOA(2, np.zeros((1, 4))).expectations(
        np.zeros(1, dtype=np.int64), np.zeros((1, 1)), np.zeros((1, 1))
    )
