"""Regions of a device for multi-programming: several problems side by side on one chip.

A region is a connected set of physical qubits, one problem's home. Regions never touch:
no coupler of the device joins two of them, so routing one problem cannot borrow a
neighbour's qubits and every two regions are separated by idle qubits. A region holds
together by usable couplers only, and holds no qubit it cannot read: couplers the
calibration states faulty (error 1.0 on IBM devices) and qubits with a readout error of
0.5 or more only separate regions (fake_torino states 11 faulty couplers and a qubit
read wrong 57 % of the time).

Choosing regions is a packing problem: how many fit comes first (a packed circuit that
holds one more problem saves a whole job), quality second (the mean error of a region's
couplers and readouts, from the target's calibration where it states one). Two steps:

* **Candidates.** From every qubit, regions grow greedily: each step adds the neighbour
  with the most couplers into the region (compact regions route a dense problem with
  fewer SWAPs), ties broken by lower error, and again with seeded random tie-breaks, so
  each seed offers a few compact shapes; and the regions of greedy packings, grown
  against earlier regions' fences, in shapes that fit side by side.
* **Packing.** CP-SAT picks the most candidates no coupler joins (one at-most-one
  constraint per coupler over the candidates touching it), then, keeping that count,
  the lowest total error. Regions of 10 qubits: 10 on fake_torino (133 qubits) and 12
  on fake_fez (156), where greedy packings (corner first, random ties) reach 7 to 9 and
  9 to 11 and rarely more (10 in 1 % of 300 on torino; 12 never on fez); 0.4 s and 1.1 s
  on one core (candidates ~0.05 s, the rest CP-SAT), once per device and size (cached).

Results are cached by the device's content (couplers with their errors, readout errors)
and the request, not by the target object: a ``Target`` is unhashable, two loads of the
same snapshot give equal keys, and a recalibrated device gives a new one. CP-SAT runs on
one worker under a deterministic time limit, so the same device always gets the same
regions, however loaded the machine.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Set
from dataclasses import dataclass
from functools import lru_cache
from statistics import fmean
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ortools.sat.python import cp_model
    from qiskit.transpiler import Target

SHAPES = 4  # random tie-break growths per seed, besides the error-first one
PACKINGS = 50  # greedy packings whose regions join the candidates
SHAPE_SEED = 20260  # fixed: the same device always gets the same candidates
COUNT_TIME = 2.0  # CP-SAT deterministic time for the most regions (proved in ~1.4)
ERROR_TIME = 1.0  # and for the lowest error at that count, without presolve (see _solve)
ERROR_SCALE = 10**6  # errors as integers for CP-SAT
# A stated error this high makes a coupler or qubit useless to a region: IBM states 1.0 for
# a faulty coupler, and a readout wrong half the time tells nothing.
UNUSABLE = 0.5

Coupler = tuple[int, int, float | None]  # two qubits (a < b), the best stated gate error
_Tiebreak = Callable[[int, set[int]], float]  # (candidate, region so far) -> higher first


@dataclass(frozen=True)
class Region:
    """Physical qubits (ascending) and the mean error of their couplers and readouts."""

    qubits: tuple[int, ...]
    error: float  # 0.0 where the target states no error for any of them


def choose_regions(target: Target, size: int, most: int | None = None) -> tuple[Region, ...]:
    """Disjoint, connected, never adjacent regions of ``size`` qubits: as many as fit
    (at most ``most``), lowest error first; () when none fits."""
    if size < 1 or (most is not None and most < 1):
        return ()
    couplers, readouts = _calibration(target)
    return _choose(target.num_qubits or 0, couplers, readouts, size, most)


def _calibration(target: Target) -> tuple[tuple[Coupler, ...], tuple[float | None, ...]]:
    """The target's couplers with their lowest two-qubit gate error, and readout errors.

    A coupler may carry several two-qubit gates or both directions; the transpiler uses
    the best, so that is its error. A target without a coupling map connects every pair.
    """
    n = target.num_qubits or 0
    coupling = target.build_coupling_map()
    pairs = coupling.get_edges() if coupling is not None else _all_pairs(n)
    best: dict[tuple[int, int], float | None] = {(min(p), max(p)): None for p in pairs}
    readout: list[float | None] = [None] * n
    for name in target.operation_names:
        for qargs, props in target[name].items():
            if qargs is None or props is None or props.error is None:
                continue
            if len(qargs) == 2:
                key = (min(qargs), max(qargs))
                known = best.get(key)
                best[key] = props.error if known is None else min(known, props.error)
            elif name == "measure":
                readout[qargs[0]] = props.error
    couplers = tuple((a, b, error) for (a, b), error in sorted(best.items()))
    return couplers, tuple(readout)


def _all_pairs(n: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(n) for b in range(a + 1, n)]


def _adjacency(n: int, pairs: list[tuple[int, int]]) -> tuple[frozenset[int], ...]:
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b in pairs:
        neighbours[a].add(b)
        neighbours[b].add(a)
    return tuple(frozenset(q) for q in neighbours)


@dataclass(frozen=True)
class _Device:
    """The device as a graph: every coupler separates regions (``neighbours``); only the
    usable ones hold a region together (``links``), around qubits that can be read."""

    neighbours: tuple[frozenset[int], ...]
    links: tuple[frozenset[int], ...]
    usable: frozenset[int]
    coupler_error: dict[frozenset[int], float]
    readout_error: dict[int, float]

    @classmethod
    def of(
        cls, n: int, couplers: tuple[Coupler, ...], readouts: tuple[float | None, ...]
    ) -> _Device:
        return cls(
            neighbours=_adjacency(n, [(a, b) for a, b, _ in couplers]),
            links=_adjacency(n, [(a, b) for a, b, e in couplers if e is None or e < UNUSABLE]),
            usable=frozenset(q for q, e in enumerate(readouts) if e is None or e < UNUSABLE),
            coupler_error={frozenset((a, b)): e for a, b, e in couplers if e is not None},
            readout_error={q: e for q, e in enumerate(readouts) if e is not None},
        )

    def region(self, qubits: frozenset[int]) -> Region:
        errors = [self.readout_error[q] for q in qubits if q in self.readout_error]
        inside = {frozenset((q, p)) for q in qubits for p in self.neighbours[q] & qubits}
        errors += [self.coupler_error[pair] for pair in inside if pair in self.coupler_error]
        return Region(tuple(sorted(qubits)), fmean(errors) if errors else 0.0)

    def lower_error(self, qubit: int, region: set[int]) -> float:
        """Higher for a better addition: minus the mean error of ``qubit``'s readout and
        its couplers into ``region``."""
        errors = [
            self.coupler_error.get(frozenset((qubit, other)), 0.0)
            for other in self.links[qubit] & region
        ]
        errors.append(self.readout_error.get(qubit, 0.0))
        return -fmean(errors)


@lru_cache(maxsize=64)
def _choose(
    n: int,
    couplers: tuple[Coupler, ...],
    readouts: tuple[float | None, ...],
    size: int,
    most: int | None,
) -> tuple[Region, ...]:
    device = _Device.of(n, couplers, readouts)
    candidates = [device.region(c) for c in _candidates(device, size)]
    if not candidates:
        return ()
    chosen = (candidates[i] for i in _pack(device, candidates, most))
    return tuple(sorted(chosen, key=lambda r: (r.error, r.qubits)))


def _candidates(device: _Device, size: int) -> list[frozenset[int]]:
    """Compact regions of ``size`` qubits, without repeats: grown from every qubit (error
    first, then random tie-breaks), and from greedy packings, whose regions grow against
    their predecessors' fences and so come in shapes that fit next to each other."""
    shuffler = random.Random(SHAPE_SEED)
    everywhere = device.usable
    found: set[frozenset[int]] = set()
    for seed in sorted(everywhere):
        found.add(_grow(device, seed, size, everywhere, device.lower_error))
        for _ in range(SHAPES):
            found.add(_grow(device, seed, size, everywhere, lambda q, region: shuffler.random()))
    for _ in range(PACKINGS):
        found.update(_greedy_packing(device, size, shuffler))
    found.discard(frozenset())
    return sorted(found, key=sorted)


def _greedy_packing(device: _Device, size: int, shuffler: random.Random) -> list[frozenset[int]]:
    """Regions grown one after another from the free qubit with fewest free neighbours (a
    corner: fewest scraps left), each fenced off by its neighbours before the next."""
    free = set(device.usable)
    regions: list[frozenset[int]] = []
    while free:
        seed = min(sorted(free), key=lambda q: (len(device.links[q] & free), shuffler.random()))
        region = _grow(device, seed, size, free, lambda q, region: shuffler.random())
        if region:
            regions.append(region)
        free -= region.union({seed}, *(device.neighbours[q] for q in region))
    return regions


def _grow(
    device: _Device, seed: int, size: int, free: Set[int], tiebreak: _Tiebreak
) -> frozenset[int]:
    """A connected region of ``size`` qubits of ``free`` around ``seed`` (empty if none):
    each step takes the neighbour with the most couplers into the region, then the best
    tie-break."""
    region = {seed}
    frontier = device.links[seed] & free
    while len(region) < size:
        if not frontier:
            return frozenset()
        chosen = max(
            sorted(frontier),  # a fixed order, so ties resolve the same way every run
            key=lambda q: (len(device.links[q] & region), tiebreak(q, region)),
        )
        region.add(chosen)
        frontier = (frontier | device.links[chosen] & free) - region
    return frozenset(region)


def _pack(device: _Device, candidates: list[Region], most: int | None) -> list[int]:
    """Indices of the most candidates no coupler joins (at most ``most``), then the
    lowest total error among packings of that count (two solves: one weighted objective
    found fewer regions in the same time)."""
    model, chosen = _packing_model(device, candidates, most)
    model.maximize(sum(chosen))
    picked = _solve(model, chosen, COUNT_TIME, presolve=True)
    model.add(sum(chosen) == len(picked))
    for i, var in enumerate(chosen):
        model.add_hint(var, i in picked)
    errors = [round(c.error * ERROR_SCALE) for c in candidates]
    model.minimize(sum(e * var for e, var in zip(errors, chosen, strict=True)))
    return sorted(_solve(model, chosen, ERROR_TIME, presolve=False) or picked)


def _packing_model(
    device: _Device, candidates: list[Region], most: int | None
) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
    """One boolean per candidate; no coupler touches two chosen ones."""
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    chosen = [model.new_bool_var(f"r{i}") for i in range(len(candidates))]
    holding: list[list[int]] = [[] for _ in device.neighbours]
    for i, candidate in enumerate(candidates):
        for q in candidate.qubits:
            holding[q].append(i)
    # A coupler touched by two regions would join them (or they overlap at one end). A
    # qubit without couplers only fits size-1 regions, and candidates are distinct.
    for a, neighbours in enumerate(device.neighbours):
        for b in neighbours:
            if a < b:
                model.add_at_most_one(chosen[i] for i in set(holding[a] + holding[b]))
    if most is not None:
        model.add(sum(chosen) <= most)
    return model, chosen


def _solve(
    model: cp_model.CpModel, chosen: list[cp_model.IntVar], limit: float, *, presolve: bool
) -> set[int]:
    """The picked candidates of CP-SAT's best answer within ``limit`` deterministic time.

    Presolve pays for itself when proving the count (it is then proved in less time) but
    took half of the error step's budget; that step, from the count's answer as a hint,
    found packings with a third of the total error without it, in the same time.
    """
    from ortools.sat.python import cp_model

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.cp_model_presolve = presolve
    solver.parameters.max_deterministic_time = limit
    solver.parameters.random_seed = SHAPE_SEED
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return set()
    return {i for i, var in enumerate(chosen) if solver.value(var)}
