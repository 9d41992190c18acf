"""Regions of a device for multi-programming (pipeline/backends/regions.py).

Every packing is checked against the target itself, not against the module's own
graph: sizes, disjointness, connectivity in the coupling map (through working couplers
only), no coupler between two regions, best first, and each region's error recomputed
from the calibration.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

import pytest
from qiskit.circuit import Measure
from qiskit.circuit.library import CZGate
from qiskit.transpiler import CouplingMap, InstructionProperties, Target

from pipeline.backends.devices import fake_device
from pipeline.backends.regions import Region, choose_regions


@pytest.fixture(scope="module")
def targets() -> dict[str, Target]:
    return {name: fake_device(name).target for name in ("fake_torino", "fake_fez", "fake_manila")}


def couplers(target: Target) -> set[frozenset[int]]:
    return {frozenset(edge) for edge in target.build_coupling_map().get_edges()}


def connected(qubits: set[int], links: set[frozenset[int]]) -> bool:
    reached, todo = set(), [min(qubits)]
    while todo:
        q = todo.pop()
        if q not in reached:
            reached.add(q)
            todo += [p for p in qubits if frozenset((q, p)) in links]
    return reached == qubits


def assert_valid_packing(target: Target, regions: tuple[Region, ...], size: int) -> None:
    links = couplers(target)
    owner: dict[int, int] = {}
    for i, region in enumerate(regions):
        assert region.qubits == tuple(sorted(set(region.qubits)))
        assert len(region.qubits) == size
        assert connected(set(region.qubits), links), region
        for q in region.qubits:
            assert q not in owner, f"qubit {q} in regions {owner[q]} and {i}"
            owner[q] = i
    for a, b in map(sorted, links):
        if a in owner and b in owner:
            assert owner[a] == owner[b], f"coupler {a}-{b} joins regions {owner[a]}, {owner[b]}"
    assert [r.error for r in regions] == sorted(r.error for r in regions)


def cz_error(target: Target, a: int, b: int) -> float:
    """A Heron coupler's error: its CZ's, the better direction."""
    return min(target["cz"][p].error for p in ((a, b), (b, a)) if p in target["cz"])


def stated_error(target: Target, qubits: tuple[int, ...]) -> float:
    """The mean of the region's readout errors and its couplers' CZ errors."""
    errors = [target["measure"][(q,)].error for q in qubits]
    errors += [cz_error(target, *pair) for pair in couplers(target) if pair <= set(qubits)]
    return fmean(errors)


@pytest.mark.parametrize(("device", "least"), [("fake_torino", 10), ("fake_fez", 12)])
def test_regions_of_ten_fill_the_chip_disjoint_connected_apart_and_best_first(
    targets: dict[str, Target], device: str, least: int
) -> None:
    target = targets[device]
    regions = choose_regions(target, 10)
    assert len(regions) >= least
    assert_valid_packing(target, regions, 10)
    # Faulty couplers (stated error 1.0) never hold a region together; no unreadable qubit.
    working = {pair for pair in couplers(target) if cz_error(target, *pair) < 0.5}
    assert len(working) < len(couplers(target))
    for region in regions:
        assert connected(set(region.qubits), working), region
        assert max(target["measure"][(q,)].error for q in region.qubits) < 0.5
        assert region.error == pytest.approx(stated_error(target, region.qubits))


def test_most_caps_the_count_and_keeps_the_lowest_error(targets: dict[str, Target]) -> None:
    torino = targets["fake_torino"]
    every = choose_regions(torino, 10)
    three = choose_regions(torino, 10, most=3)
    assert len(three) == 3
    assert_valid_packing(torino, three, 10)
    # The three best of the full packing are one way to place three: the cap finds no worse.
    assert sum(r.error for r in three) <= sum(r.error for r in every[:3]) + 1e-12


def test_the_count_is_optimal_where_greedy_from_the_middle_is_not() -> None:
    # A line of 8 qubits, regions of 2: only 0-1, 3-4, 6-7 fits three; no stated errors.
    line = Target.from_configuration(["cx"], num_qubits=8, coupling_map=CouplingMap.from_line(8))
    regions = choose_regions(line, 2)
    assert [r.qubits for r in regions] == [(0, 1), (3, 4), (6, 7)]
    assert {r.error for r in regions} == {0.0}


def line(n: int, faulty: tuple[int, int] | None = None, unreadable: int | None = None) -> Target:
    """A line of ``n`` qubits with good CZs and readouts, but for one faulty or unreadable."""
    target = Target(num_qubits=n)
    cz = {
        (a, a + 1): InstructionProperties(error=1.0 if (a, a + 1) == faulty else 0.01)
        for a in range(n - 1)
    }
    target.add_instruction(CZGate(), cz)
    readout = {
        (q,): InstructionProperties(error=0.6 if q == unreadable else 0.02) for q in range(n)
    }
    target.add_instruction(Measure(), readout)
    return target


@pytest.mark.parametrize(
    ("broken", "possible"),
    [({"faulty": (0, 1)}, [(1, 2), (2, 3), (3, 4)]), ({"unreadable": 4}, [(0, 1), (1, 2), (2, 3)])],
)
def test_a_faulty_coupler_or_an_unreadable_qubit_holds_no_region(
    broken: dict[str, Any], possible: list[tuple[int, ...]]
) -> None:
    # On a line of 5, regions of 2 fit twice (0-1, 3-4); either defect leaves room for one.
    assert [r.qubits for r in choose_regions(line(5), 2)] == [(0, 1), (3, 4)]
    regions = choose_regions(line(5, **broken), 2)
    assert len(regions) == 1
    assert regions[0].qubits in possible


def test_a_small_device_packs_what_fits_and_nothing_larger(targets: dict[str, Target]) -> None:
    manila = targets["fake_manila"]  # a line 0-1-2-3-4
    assert choose_regions(manila, 10) == ()
    assert choose_regions(manila, 6) == ()
    assert [r.qubits for r in choose_regions(manila, 5)] == [(0, 1, 2, 3, 4)]
    # Two regions of 2 need qubit 2 idle between them.
    assert sorted(r.qubits for r in choose_regions(manila, 2)) == [(0, 1), (3, 4)]
    assert choose_regions(manila, 2, most=0) == ()


def test_results_are_cached(targets: dict[str, Target]) -> None:
    first = choose_regions(targets["fake_fez"], 10)
    assert choose_regions(targets["fake_fez"], 10) is first
