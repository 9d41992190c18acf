"""Packing: problems side by side on one device circuit, each reading back its own bits.

The packed circuit is sampled here by Aer's ideal sampler (its idle qubits truncated), and
each problem's outcome distribution is compared with an exact statevector of a QAOA circuit
this test builds itself: a problem that read another region's bits, or its own in the wrong
order, lands far outside the shot-noise bound.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Measure
from qiskit.circuit.library import CZGate
from qiskit.quantum_info import Statevector
from qiskit.transpiler import InstructionProperties, Target
from qiskit_aer.primitives import SamplerV2

from pipeline.backends.devices import fake_device
from pipeline.backends.regions import choose_regions
from pipeline.errors import FallbackRequired
from pipeline.qaoa.packing import SideBySide, fitting_regions
from pipeline.qaoa.shapes import ShapeKey

N, REPS, SHOTS = 5, 1, 4000
PAIRS = tuple(itertools.combinations(range(N), 2))
# Three problems with different graphs and weights, so different distributions.
GRAPHS = [
    {(0, 1): 1.0, (1, 2): 0.5, (2, 3): 1.5, (3, 4): 1.0},
    {(0, 2): 1.2, (0, 3): 0.7, (1, 4): 1.0, (2, 4): 0.4, (1, 3): 1.1},
    {(0, 4): 0.9, (1, 2): 1.3, (3, 4): 0.6, (0, 1): 0.8},
]
ANGLES = [(0.4, -0.35), (0.7, -0.2), (0.25, -0.5)]  # (gamma, beta) per problem


@pytest.fixture(scope="module")
def target():  # type: ignore[no-untyped-def]
    return fake_device("fake_kolkata").target  # 27 qubits: three 5-qubit regions fit


def exact_distribution(
    graph: dict[tuple[int, int], float], gamma: float, beta: float
) -> np.ndarray:
    """P(outcome), outcome bit k = qubit k, from a circuit built here, not the pipeline's."""
    circuit = QuantumCircuit(N)
    circuit.h(range(N))
    for (i, j), w in graph.items():
        circuit.rzz(2 * gamma * w, i, j)
    circuit.rx(2 * beta, range(N))
    return np.asarray(Statevector(circuit).probabilities())


@pytest.mark.parametrize("template_reps", [1, 2])
def test_each_packed_problem_reads_its_own_region(target, template_reps: int) -> None:  # type: ignore[no-untyped-def]
    """One layer of angles on a template of ``template_reps``: a deeper template runs its
    extra layer as the identity."""
    regions = choose_regions(target, N)
    assert len(regions) >= len(GRAPHS), "kolkata must hold three 5-qubit regions"
    J = np.array([[graph.get(pair, 0.0) for pair in PAIRS] for graph in GRAPHS])
    shape = ShapeKey(N, PAIRS, (), template_reps, "test", pooled=True)
    placement = SideBySide(target, shape, np.zeros((len(GRAPHS), 0)), J, [SHOTS] * len(GRAPHS))
    gammas = np.array([[[g]] for g, _ in ANGLES])
    betas = np.array([[[b]] for _, b in ANGLES])
    pubs = placement.pubs(gammas, betas)
    assert len(pubs) == 1, "three problems fit one circuit"
    circuit = pubs[0][0]
    assert circuit.num_qubits == target.num_qubits
    result = SamplerV2(seed=11).run(pubs).result()
    outcomes = placement.outcomes(result)
    seats = [set(q) for q in placement.qubits]
    assert all(not (a & b) for a, b in itertools.combinations(seats, 2))
    # Total variation between 4,000 shots and the truth over 32 outcomes: ~0.03 expected.
    bound = 3 * math.sqrt(2**N / SHOTS) / 2
    truths = [exact_distribution(g, *a) for g, a in zip(GRAPHS, ANGLES, strict=True)]
    for b, shots in enumerate(outcomes):
        assert shots.shape == (1, SHOTS)
        observed = np.bincount(shots[0], minlength=2**N) / SHOTS
        distances = [0.5 * np.abs(observed - truth).sum() for truth in truths]
        # Its own distribution within the bound; every other problem's well outside it.
        assert distances[b] < bound, (b, distances, bound)
        assert all(d > 2 * bound for k, d in enumerate(distances) if k != b), (b, distances)


def test_problems_beyond_the_regions_go_to_another_circuit(target) -> None:  # type: ignore[no-untyped-def]
    fits = len(choose_regions(target, N))
    count = fits + 1
    J = np.tile([1.0 if k < N else 0.0 for k in range(len(PAIRS))], (count, 1))
    shape = ShapeKey(N, PAIRS, (), REPS, "test", pooled=True)
    shots = [100] * (count - 1) + [200]  # the last asks for other shots: a circuit of its own
    placement = SideBySide(target, shape, np.zeros((count, 0)), J, shots)
    pubs = placement.pubs(np.full((count, 1, 1), 0.3), np.full((count, 1, 1), -0.3))
    assert [p[2] for p in pubs] == [100, 200]
    assert [p[0].num_clbits for p in pubs] == [N * fits, N]


def test_a_problem_with_no_cost_term_samples_the_uniform_state(target) -> None:  # type: ignore[no-untyped-def]
    """No edge, so no gamma in its circuit: its region gets only the mixer, and its shots
    are uniform beside a neighbour that has a graph."""
    J = np.array([[0.0] * len(PAIRS), [GRAPHS[0].get(pair, 0.0) for pair in PAIRS]])
    shape = ShapeKey(N, PAIRS, (), REPS, "test", pooled=True)
    placement = SideBySide(target, shape, np.zeros((2, 0)), J, [SHOTS] * 2)
    pubs = placement.pubs(np.full((2, 1, 1), 0.4), np.full((2, 1, 1), -0.35))
    empty, graph = placement.outcomes(SamplerV2(seed=3).run(pubs).result())
    uniform = np.full(2**N, 2.0**-N)
    bound = 3 * math.sqrt(2**N / SHOTS) / 2
    assert 0.5 * np.abs(np.bincount(empty[0], minlength=2**N) / SHOTS - uniform).sum() < bound
    truth = exact_distribution(GRAPHS[0], 0.4, -0.35)
    assert 0.5 * np.abs(np.bincount(graph[0], minlength=2**N) / SHOTS - truth).sum() < bound


def test_no_region_to_pack_into_sends_the_batch_to_the_classical_solver() -> None:
    """A 3-qubit line whose middle coupler is faulty holds no connected 3 working qubits:
    the batch is refused with a reason (FallbackRequired: CP-SAT answers it), not crashed."""
    line = Target(num_qubits=3)
    line.add_instruction(
        CZGate(),
        {(0, 1): InstructionProperties(error=0.01), (1, 2): InstructionProperties(error=1.0)},
    )
    line.add_instruction(Measure(), {(q,): InstructionProperties(error=0.02) for q in range(3)})
    shape = ShapeKey(3, ((0, 1), (1, 2)), (), 1, "test", pooled=True)
    with pytest.raises(FallbackRequired, match="no region of 3 connected working qubits"):
        SideBySide(line, shape, np.zeros((1, 0)), np.ones((1, 2)), [100])


def test_regions_where_the_circuit_fares_poorly_are_left_out() -> None:
    """On fake_torino a 10-node 3-regular circuit's estimated success probability ranges
    widely over the chip's regions: ``fidelity`` keeps those within that share of the best,
    best first; 0 keeps them all, 1 the best alone."""
    torino = fake_device("fake_torino").target
    pairs = (
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 4),
        (1, 5),
        (2, 6),
        (2, 7),
        (3, 8),
        (3, 9),
        (4, 6),
        (4, 8),
        (5, 7),
        (5, 9),
        (6, 9),
        (7, 8),
    )  # 3-regular on 10 nodes
    shape = ShapeKey(10, pairs, (), 2, "test")
    every = choose_regions(torino, 10)
    assert set(fitting_regions(torino, shape, pairs, 0.0)) == set(every)
    kept = {f: fitting_regions(torino, shape, pairs, f) for f in (0.0, 0.5, 0.75, 1.0)}
    assert len(kept[1.0]) == 1 and kept[0.75][0] == kept[1.0][0] == kept[0.0][0]
    assert len(kept[0.0]) > len(kept[0.5]) >= len(kept[0.75]) >= 1
    assert set(kept[0.75]) <= set(kept[0.5]) <= set(kept[0.0])
