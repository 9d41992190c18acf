"""A problem's energy diagonal for the fast path, built in place, and its levels.

``E(x | 2^k) = E(x) - 2 f_k(x)``, qubit by qubit: 8 bytes a state, no ``(2^n, n)`` spin
matrix. Few distinct energies (integer-weighted MaxCut) are kept as a 2-byte level index
per state. Split from :mod:`pipeline.qaoa.fast_sim`, which evolves states with them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from numba import njit

from pipeline.memory import MAX_QUBITS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
LevelArray = npt.NDArray[np.uint16]


@njit(cache=True, nogil=True)
def _fill_energies(
    out: FloatArray,
    base: FloatArray,
    start: IntArray,
    other: IntArray,
    weight: FloatArray,
    total: float,
) -> None:  # pragma: no cover - compiled
    """E(x) for x < len(out) (higher qubits at z = +1), built qubit by qubit in place.

    Flipping qubit k of x (bits above k clear) from z = +1 to -1 changes the energy by
    ``-2 (base[k] + sum_t weight[t] z_other[t](x))`` over the pairs t joining k to a
    lower qubit (``start[k]:start[k + 1]``); ``base[k]`` holds h_k and the pairs joining
    it to higher qubits (all at z = +1). E(0) is the sum of every weight.
    """
    out[0] = total
    size = 1
    k = 0
    while size < out.shape[0]:
        for x in range(size):
            field = base[k]
            for t in range(start[k], start[k + 1]):
                field += weight[t] * (1 - 2 * ((x >> other[t]) & 1))
            out[x + size] = out[x] - 2.0 * field
        size *= 2
        k += 1


def fill_energies(
    out: FloatArray, h: FloatArray, pairs: Sequence[tuple[int, int]], J: FloatArray
) -> FloatArray:
    """``out[x] = h.z + sum J z_i z_j`` for x < len(out) (a power of two; qubit k = bit k
    of x, z = +1 for bit 0; qubits beyond the index at z = +1). Allocates nothing of 2^n."""
    n = len(h)
    if len(out) > 1 << MAX_QUBITS:
        raise ValueError(f"the fast simulator takes at most {MAX_QUBITS} qubits")
    pair_array = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    weights = np.asarray(J, dtype=np.float64)
    low, high = pair_array.min(axis=1), pair_array.max(axis=1)
    order = np.argsort(high, kind="stable")
    start = np.searchsorted(high[order], np.arange(n + 1)).astype(np.int64)
    base = np.asarray(h, dtype=np.float64).copy()
    np.add.at(base, low, weights)
    total = float(np.sum(h) + np.sum(weights))
    _fill_energies(out, base, start, low[order].astype(np.int64), weights[order], total)
    return out


def spin_energies(
    n: int, h: FloatArray, pairs: Sequence[tuple[int, int]], J: FloatArray
) -> FloatArray:
    """E(x) = h.z + sum J z_i z_j for every basis state x (qubit k = bit k of the index)."""
    if n > MAX_QUBITS:
        raise ValueError(f"the fast simulator takes at most {MAX_QUBITS} qubits, not {n}")
    return fill_energies(np.empty(1 << n), np.asarray(h, dtype=np.float64), pairs, J)


@njit(cache=True, nogil=True)
def count_levels(ordered: FloatArray, limit: int) -> int:  # pragma: no cover - compiled
    """Distinct values of a sorted array, counting stops past ``limit``."""
    count = 1
    for x in range(1, ordered.shape[0]):
        if ordered[x] != ordered[x - 1]:
            count += 1
            if count > limit:
                break
    return count


@njit(cache=True, nogil=True)
def index_levels(
    values: FloatArray, ordered: FloatArray, levels: FloatArray, inverse: LevelArray
) -> None:  # pragma: no cover - compiled
    """``levels``: the distinct values of ``ordered``; ``inverse[x]``: the level of values[x]."""
    count = 0
    levels[0] = ordered[0]
    for x in range(1, ordered.shape[0]):
        if ordered[x] != levels[count]:
            count += 1
            levels[count] = ordered[x]
    for x in range(values.shape[0]):
        lo, hi = 0, count
        while lo < hi:  # first level >= value, which is the value
            mid = (lo + hi) // 2
            if levels[mid] < values[x]:
                lo = mid + 1
            else:
                hi = mid
        inverse[x] = lo
