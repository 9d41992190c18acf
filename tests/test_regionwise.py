"""The regionwise sampler (pipeline/backends/regionwise.py) against Aer's own SamplerV2.

Exactness is checked statistically with a bound that cannot flake: both samplers are
seeded, and the total-variation bound holds with probability 1 - 1e-9 for any seeds
(Bretagnolle-Huber-Carol: P(TV(empirical, true) >= e) <= 2**k exp(-2 N e**2) for k
outcomes and N shots, once per sampler).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter
from qiskit.primitives import PrimitiveResult
from qiskit_aer import AerError, AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error
from qiskit_aer.primitives import SamplerV2

from pipeline.backends.devices import fake_device
from pipeline.backends.regions import choose_regions
from pipeline.backends.regionwise import RegionwiseSampler, _by_method, _restricted, components

FAILURE = 1e-9


@pytest.fixture(scope="module")
def manila_noise() -> NoiseModel:
    return NoiseModel.from_backend(fake_device("fake_manila"))


def aer_sampler(noise_model: NoiseModel, shots: int, seed: int) -> SamplerV2:
    options = {"noise_model": noise_model, "method": "density_matrix"}
    return SamplerV2(default_shots=shots, seed=seed, options={"backend_options": options})


def tv_bound(outcomes: int, shots: int) -> float:
    """Two samplers' empirical distributions of the same law differ at most this much."""
    one = math.sqrt((outcomes * math.log(2) + math.log(2 / FAILURE)) / (2 * shots))
    return 2 * one


def tv(a: dict[str, int], b: dict[str, int]) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def marginal(counts: dict[str, int], positions: list[int]) -> dict[str, int]:
    """Counts of the bits at ``positions`` (0: the rightmost, as qiskit prints)."""
    out: Counter[str] = Counter()
    for bits, n in counts.items():
        out["".join(bits[-1 - p] for p in positions)] += n
    return dict(out)


def test_components_are_qubits_joined_by_gates_with_their_measured_clbits() -> None:
    circuit = QuantumCircuit(7, 5)
    circuit.h(0)
    circuit.cx(0, 2)  # {0, 2}
    circuit.x(1)  # {1} alone, unmeasured
    circuit.cz(3, 5)
    circuit.barrier()  # joins nothing
    circuit.measure(2, 4)
    circuit.measure(0, 1)
    circuit.measure(3, 0)
    with circuit.if_test((circuit.clbits[0], 1)):  # qubit 6 reads a clbit of {3, 5}
        circuit.x(6)
    circuit.measure(6, 3)
    # qubit 4 is idle: no component
    assert components(circuit) == [([0, 2], [1, 4]), ([1], []), ([3, 5, 6], [0, 3])]


def test_results_are_shaped_and_ordered_like_aer() -> None:
    # Without noise every outcome is certain, so the bits must equal Aer's exactly.
    theta = Parameter("theta")
    low, high = ClassicalRegister(2, "low"), ClassicalRegister(3, "high")
    circuit = QuantumCircuit(QuantumRegister(5), low, high)
    circuit.x([0, 3])
    circuit.rx(theta, 1)  # 0 or pi: each parameter set its own outcome
    circuit.cx(3, 4)
    circuit.measure([0, 1, 3, 4], [high[2], low[0], high[0], low[1]])  # high[1] unmeasured
    values = np.array([0, math.pi, math.pi, 0, math.pi, 0]).reshape(2, 3, 1)
    pubs: list[Any] = [(circuit, values), (circuit, values[0, 1], 7)]
    ideal = NoiseModel()
    ours = RegionwiseSampler(ideal, default_shots=5, seed=1).run(pubs).result()
    theirs = aer_sampler(ideal, 5, 1).run(pubs).result()
    assert isinstance(ours, PrimitiveResult)
    for mine, aers in zip(ours, theirs, strict=True):
        assert list(mine.data.keys()) == list(aers.data.keys()) == ["low", "high"]
        for name in ("low", "high"):
            a, b = mine.data[name], aers.data[name]
            assert (a.shape, a.num_shots, a.num_bits) == (b.shape, b.num_shots, b.num_bits)
            assert np.array_equal(a.array, b.array)
        assert mine.metadata["shots"] == aers.metadata["shots"]
    assert ours[0].data.high.get_counts((1, 2)) == {"101": 5}
    assert [ours[0].data.low.get_counts((0, k)) for k in range(3)] == [
        {"10": 5},
        {"11": 5},
        {"11": 5},
    ]
    assert ours[1].data.low.shape == () and ours[1].data.low.num_shots == 7
    again = RegionwiseSampler(ideal, default_shots=5, seed=1).run([(circuit, [0.0])], shots=3)
    assert again.result()[0].data.low.num_shots == 3


def separated_pairs() -> QuantumCircuit:
    """Two entangled pairs on manila's line 0-1-2-3-4, qubit 2 idle between them; the
    four clbits interleaved across the pairs, each bit with its own bias."""
    circuit = QuantumCircuit(5, 4)
    circuit.ry(0.7, 0)
    circuit.cx(0, 1)
    circuit.ry(1.9, 1)
    circuit.ry(2.3, 3)
    circuit.cx(3, 4)
    circuit.rx(0.4, 4)
    circuit.measure([0, 1, 3, 4], [2, 0, 3, 1])
    return circuit


def test_samples_match_aer_on_the_whole_circuit_within_shot_noise(
    manila_noise: NoiseModel,
) -> None:
    shots = 20_000
    circuit = separated_pairs()
    assert [c for _, c in components(circuit)] == [[0, 2], [1, 3]]
    ours = RegionwiseSampler(manila_noise, shots, seed=11).run([circuit]).result()
    theirs = aer_sampler(manila_noise, shots, seed=12).run([circuit]).result()
    mine, aers = ours[0].data.c.get_counts(), theirs[0].data.c.get_counts()
    assert tv(mine, aers) < tv_bound(16, shots)
    for positions in ([0, 2], [1, 3], [0, 1], [2, 3]):  # each pair, and across pairs
        assert tv(marginal(mine, positions), marginal(aers, positions)) < tv_bound(4, shots)


def test_the_same_seed_repeats_and_another_does_not(manila_noise: NoiseModel) -> None:
    circuit = separated_pairs()

    def sample(seed: int) -> np.ndarray:
        result = RegionwiseSampler(manila_noise, 200, seed).run([circuit, circuit]).result()
        return np.stack([result[0].data.c.array, result[1].data.c.array])

    first = sample(3)
    assert np.array_equal(first, sample(3))
    assert not np.array_equal(first, sample(4))
    assert not np.array_equal(first[0], first[1])  # two pubs are two independent runs


def test_the_restricted_noise_model_samples_bit_for_bit_the_same() -> None:
    noise = NoiseModel.from_backend(fake_device("fake_kolkata"))  # 27 qubits
    circuit = QuantumCircuit(27, 27)
    circuit.sx(12)
    circuit.cx(12, 13)
    circuit.x(14)
    circuit.cx(13, 14)
    circuit.measure([12, 13, 14], [0, 1, 2])
    kept = _restricted(noise, {12, 13, 14})
    assert len(kept.to_dict()["errors"]) < len(noise.to_dict()["errors"]) / 5

    def memory(model: NoiseModel) -> list[str]:
        simulator = AerSimulator(noise_model=model, method="density_matrix")
        return (
            simulator.run(circuit, shots=500, seed_simulator=5, memory=True).result().get_memory()
        )

    assert memory(kept) == memory(noise)


def test_a_packed_torino_circuit_comes_back_split_by_region() -> None:
    device = fake_device("fake_torino")
    regions = choose_regions(device.target, 10)[:10]  # cached if test_regions.py ran
    assert len(regions) == 10
    couplers = {frozenset(edge) for edge in device.target.build_coupling_map().get_edges()}
    registers = [ClassicalRegister(10, f"r{k}") for k in range(10)]
    packed = QuantumCircuit(QuantumRegister(133), *registers)
    rng = np.random.default_rng(7)
    prepared = []
    for region, register in zip(regions, registers, strict=True):
        bits = "".join(rng.choice(["0", "1"], size=10))  # qiskit order: last qubit first
        assert bits != bits[::-1]
        prepared.append(bits)
        qubits = list(region.qubits)
        packed.x([q for i, q in enumerate(qubits) if bits[-1 - i] == "1"])
        for pair in couplers:  # CZ leaves basis states be, and joins the region in one
            if pair <= set(qubits):
                packed.cz(*sorted(pair))
        packed.measure(qubits, register)
    assert len(set(prepared)) == 10
    assert sorted(tuple(q) for q, _ in components(packed)) == sorted(r.qubits for r in regions)
    noise = NoiseModel.from_backend(device)
    started = time.perf_counter()
    result = RegionwiseSampler(noise, 1024, seed=2).run([packed]).result()[0]
    assert time.perf_counter() - started < 30
    for register, bits in zip(registers, prepared, strict=True):
        counts = result.data[register.name].get_counts()
        assert max(counts, key=counts.__getitem__) == bits, register.name


def test_a_component_aer_cannot_simulate_raises() -> None:
    """40 qubits: past the density matrix's reach it goes to statevector trajectories, and
    2**40 amplitudes (16 TiB) are past those too: Aer refuses, it does not hang."""
    ghz = QuantumCircuit(40, 40)
    ghz.h(0)
    for q in range(39):
        ghz.cx(q, q + 1)
    ghz.measure(range(40), range(40))
    job = RegionwiseSampler(NoiseModel(), 10, seed=1).run([ghz])
    with pytest.raises(AerError, match="Insufficient memory"):
        job.result()


def test_a_component_past_the_density_matrix_samples_as_trajectories() -> None:
    """14 qubits would need a 4 GiB density matrix: sampled as noisy statevector
    trajectories instead, a GHZ state still reads all zeros or all ones under weak noise."""
    ghz = QuantumCircuit(14, 14)
    ghz.h(0)
    for q in range(13):
        ghz.cx(q, q + 1)
    ghz.measure(range(14), range(14))
    small = QuantumCircuit(14, 14)
    small.cx(0, 1)
    assert _by_method([ghz, small]) == {"statevector": [0], "density_matrix": [1]}
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(1e-3, 2), ["cx"])
    result = RegionwiseSampler(noise, 200, seed=2).run([ghz]).result()
    counts = result[0].data.c.get_counts()
    assert sum(counts.values()) == 200
    assert counts.get("0" * 14, 0) + counts.get("1" * 14, 0) >= 180, counts
