"""An exact statevector simulator specialised to QAOA on diagonal cost functions.

All three problem kinds have a diagonal cost Hamiltonian, so one QAOA layer is a
pointwise phase ``exp(-i gamma E(x))`` followed by ``RX(2 beta)`` on every qubit. This
module computes each problem's energy diagonal once, then evaluates many angle sets
per compiled (numba) call, with no circuit, no transpilation and no per-call overhead.
It computes what the template circuit computes (the tests hold it to Aer's expectations
within 1e-9); Aer stays the reference and the path for anything noisy.

Memory is what bounds the fast path at 20+ qubits, so it is spent deliberately and
:func:`fast_path_bytes` (pipeline.memory) states it before a chunk runs:

* a diagonal is filled in place, qubit by qubit (``E(x | 2^k) = E(x) - 2 f_k(x)``, with
  ``f_k`` the field on qubit k from the qubits below it): 8 bytes a state, no
  ``(2^n, n)`` spin matrix;
* a problem's data are built the first time it is evaluated, not for the whole chunk
  at once, and kept as compactly as they allow: when it has at most
  ``MAX_LEVELS`` distinct energies (integer-weighted MaxCut has a few hundred), only a
  2-byte level index per state (the phase is computed once per level and gathered,
  which also removes most of the transcendental work); otherwise its 8-byte diagonal;
* :meth:`DiagonalQAOA.release` drops them once the shots are drawn.

When E(x) = E(~x) for every cost (no linear field: MaxCut, QUBOs with h = 0), the QAOA
state is flip-symmetric too, and only the half of the amplitudes with the top qubit 0 is
kept (the top qubit's RX pairs x with x ^ top, whose amplitude is that of the complement
of x, in the kept half): half the states, memory and work, the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from numba import njit
from numpy.random import Generator

from pipeline.memory import MAX_LEVELS, MAX_QUBITS, fast_path_bytes, kept_states
from pipeline.qaoa.energies import count_levels, fill_energies, index_levels, spin_energies

__all__ = ["MAX_LEVELS", "MAX_QUBITS", "DiagonalQAOA", "fast_path_bytes"]
__all__ += ["fill_energies", "kept_states", "spin_energies", "warm_up"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
LevelArray = npt.NDArray[np.uint16]
# A problem's energies as the kernels take them: (values, inverse, use_levels), see _evolve.
Diagonal = tuple[FloatArray, LevelArray, bool]


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
def _evolve(
    re: FloatArray,
    im: FloatArray,
    n: int,
    diagonal: Diagonal,
    gammas: FloatArray,
    betas: FloatArray,
    symmetric: bool,
) -> None:  # pragma: no cover - compiled
    """The QAOA state at one angle set into (re, im), the kept amplitudes.

    ``diagonal`` (values, inverse, use_levels): ``values`` the energy of every kept state,
    or with ``use_levels`` the distinct energies, state x having ``values[inverse[x]]``.
    """
    values, inverse, use_levels = diagonal
    kept = n - 1 if symmetric else n
    states = 1 << kept
    re[:] = 1.0 / np.sqrt(1 << n)
    im[:] = 0.0
    phase_re = np.empty(values.shape[0] if use_levels else 0)
    phase_im = np.empty(values.shape[0] if use_levels else 0)
    for layer in range(gammas.shape[0]):
        gamma = gammas[layer]
        if use_levels:
            for level in range(values.shape[0]):
                phase_re[level] = np.cos(gamma * values[level])
                phase_im[level] = -np.sin(gamma * values[level])
            for x in range(states):
                level = inverse[x]
                pr, pi = phase_re[level], phase_im[level]
                r, i = re[x], im[x]
                re[x] = r * pr - i * pi
                im[x] = r * pi + i * pr
        else:
            for x in range(states):
                angle = gamma * values[x]
                pr, pi = np.cos(angle), -np.sin(angle)
                r, i = re[x], im[x]
                re[x] = r * pr - i * pi
                im[x] = r * pi + i * pr
        c, s = np.cos(betas[layer]), np.sin(betas[layer])
        _mixer(re, im, kept, c, s)
        if symmetric:
            _mixer_top_of_symmetric(re, im, c, s)


@njit(cache=True, nogil=True)
def _expectations(
    n: int, diagonal: Diagonal, gammas: FloatArray, betas: FloatArray, symmetric: bool
) -> FloatArray:  # pragma: no cover - compiled
    """<E> of one problem at every angle set (rows of ``gammas``/``betas``)."""
    values, inverse, use_levels = diagonal
    kept = n - 1 if symmetric else n
    states = 1 << kept
    re = np.empty(states)
    im = np.empty(states)
    out = np.empty(gammas.shape[0])
    weight_of_kept = 2.0 if symmetric else 1.0  # each kept state stands for itself and ~x
    for k in range(gammas.shape[0]):
        _evolve(re, im, n, diagonal, gammas[k], betas[k], symmetric)
        total = 0.0
        for x in range(states):
            energy = values[inverse[x]] if use_levels else values[x]
            total += (re[x] * re[x] + im[x] * im[x]) * energy
        out[k] = weight_of_kept * total
    return out


@njit(cache=True, nogil=True)
def _popcount(x: int) -> int:  # pragma: no cover - compiled
    ones = 0
    while x:
        x &= x - 1
        ones += 1
    return ones


@njit(cache=True, nogil=True)
def _observe(
    re: FloatArray, im: FloatArray, observable: FloatArray, n: int, ones: int, symmetric: bool
) -> tuple[float, float]:  # pragma: no cover - compiled
    """(<O 1_F>, <1_F>) for a diagonal O over the full register, from the kept amplitudes:
    F is the outcomes with ``ones`` bits set (every outcome when ``ones`` < 0). Counting the
    bits here, state by state, costs no memory beyond the observable's diagonal."""
    states = re.shape[0]
    last = observable.shape[0] - 1
    total = 0.0
    mass = 0.0
    for x in range(states):
        p = re[x] * re[x] + im[x] * im[x]
        bits = _popcount(x)
        if ones < 0 or bits == ones:
            total += p * observable[x]
            mass += p
        if symmetric and (ones < 0 or n - bits == ones):  # x stands for its complement too
            total += p * observable[last - x]
            mass += p
    return total, mass


class DiagonalQAOA:
    """Exact QAOA expectations for a batch of same-size problems, given their Ising weights.

    ``h``: (problems, n) normalised linear weights; ``J``: (problems, len(pairs)). Each
    problem's energies are built the first time it is evaluated (see the module notes).
    """

    def __init__(
        self, n: int, h: FloatArray, pairs: Sequence[tuple[int, int]], J: FloatArray
    ) -> None:
        if n > MAX_QUBITS:
            raise ValueError(f"the fast simulator takes at most {MAX_QUBITS} qubits, not {n}")
        self.n = n
        self.h = np.atleast_2d(np.asarray(h, dtype=np.float64))
        self.pairs = tuple(pairs)
        self.J = np.asarray(J, dtype=np.float64).reshape(len(self.h), len(self.pairs))
        # No linear field anywhere: E(x) == E(~x) for every problem.
        self.symmetric = n > 1 and not self.h.any()
        self.states = kept_states(n, self.symmetric)
        self._data: dict[int, Diagonal] = {}
        self._no_levels = np.zeros(0, dtype=np.uint16)

    @property
    def held_bytes(self) -> int:
        """Bytes of problem data held now."""
        return sum(values.nbytes + inverse.nbytes for values, inverse, _ in self._data.values())

    def diagonal(self, b: int) -> FloatArray:
        """Problem ``b``'s energy at every kept state (a fresh array)."""
        return fill_energies(np.empty(self.states), self.h[b], self.pairs, self.J[b])

    def _problem(self, b: int) -> Diagonal:
        if b not in self._data:
            values = self.diagonal(b)
            ordered = np.sort(values)
            count = count_levels(ordered, MAX_LEVELS)
            if count <= min(MAX_LEVELS, self.states // 8):
                levels = np.empty(count)
                inverse = np.empty(self.states, dtype=np.uint16)
                index_levels(values, ordered, levels, inverse)
                self._data[b] = (levels, inverse, True)
            else:
                self._data[b] = (values, self._no_levels, False)
        return self._data[b]

    def draw(
        self, b: int, gammas: FloatArray, betas: FloatArray, shots: int, generator: Generator
    ) -> tuple[IntArray, IntArray]:
        """The distinct outcomes of ``shots`` shots of problem ``b``'s QAOA circuit at one
        angle set, drawn from its exact final state, and how often each came up. In place:
        the state's two arrays become the cumulative distribution, so drawing costs no
        memory beyond the evaluation's."""
        re, im = self._final_state(b, gammas, betas)
        np.multiply(re, re, out=re)
        np.multiply(im, im, out=im)
        re += im
        del im
        cdf = np.cumsum(re, out=re)
        picks = np.searchsorted(cdf, generator.random(shots) * cdf[-1], side="right")
        np.minimum(picks, self.states - 1, out=picks)  # a draw of exactly the total
        if self.symmetric:  # a kept state stands for itself and its complement, equally
            complement = (1 << self.n) - 1 - picks
            picks = np.where(generator.random(shots) < 0.5, complement, picks)
        outcomes, counts = np.unique(picks, return_counts=True)
        return outcomes.astype(np.int64), counts.astype(np.int64)

    def _final_state(
        self, b: int, gammas: FloatArray, betas: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Problem ``b``'s kept amplitudes (real, imaginary) at one angle set."""
        diagonal = self._problem(b)
        re, im = np.empty(self.states), np.empty(self.states)
        gammas = np.ascontiguousarray(gammas, dtype=np.float64)
        betas = np.ascontiguousarray(betas, dtype=np.float64)
        _evolve(re, im, self.n, diagonal, gammas, betas, self.symmetric)
        return re, im

    def release(self) -> None:
        """Drop every problem's data (they are rebuilt if evaluated again)."""
        self._data.clear()

    def expectations(self, owner: IntArray, gammas: FloatArray, betas: FloatArray) -> FloatArray:
        """<E> for angle set k of problem ``owner[k]``; angles are (K, reps)."""
        owner = np.asarray(owner, dtype=np.int64)
        gammas = np.ascontiguousarray(gammas, dtype=np.float64)
        betas = np.ascontiguousarray(betas, dtype=np.float64)
        out = np.empty(len(owner))
        for b in np.unique(owner):
            sets = np.flatnonzero(owner == b)
            out[sets] = _expectations(
                self.n,
                self._problem(int(b)),
                np.ascontiguousarray(gammas[sets]),
                np.ascontiguousarray(betas[sets]),
                self.symmetric,
            )
        return out

    def observe(
        self,
        b: int,
        gammas: FloatArray,
        betas: FloatArray,
        h: FloatArray,
        pairs: Sequence[tuple[int, int]],
        J: FloatArray,
        ones: int | None = None,
    ) -> float:
        """<h.z + sum J z_i z_j> (any weights, any pairs) in problem ``b``'s QAOA state at
        one angle set: the state once, then the observable's diagonal over the register.

        ``ones``: only the outcomes with that many bits set count (a budget constraint), the
        distribution renormalised over them; NaN when none has any probability."""
        re, im = self._final_state(b, gammas, betas)
        observable = fill_energies(np.empty(1 << self.n), np.asarray(h, dtype=np.float64), pairs, J)
        wanted = -1 if ones is None else ones
        total, mass = _observe(re, im, observable, self.n, wanted, self.symmetric)
        return float(total / mass) if mass > 0 else math.nan


def warm_up() -> None:
    """Load (or compile, on a fresh checkout) the kernels with the argument types used above."""
    for h in (np.zeros((1, 2)), np.array([[0.5, 0.0]])):  # symmetric and not
        for J in (np.array([[1.0]]), np.array([[np.pi]])):  # one level, and a diagonal
            simulator = DiagonalQAOA(2, h, [(0, 1)], J)
            simulator.expectations(np.zeros(1, dtype=np.int64), np.zeros((1, 1)), np.zeros((1, 1)))
            simulator.observe(0, np.zeros(1), np.zeros(1), np.ones(2), [(0, 1)], np.ones(1), 1)
