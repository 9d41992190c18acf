"""Braket's local simulators behind the engine's interface: Qiskit PUBs in as program sets,
Qiskit results out, checked against exact statevectors computed by Qiskit's own reference
(`Statevector`), within bounds set by the shots (Braket's simulators take no seed)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, Statevector

from pipeline.backends.base import Primitive
from pipeline.backends.braket_programs import entries, translate
from pipeline.backends.calls import BackendCaller, CallPolicy
from pipeline.backends.registry import get_backend
from pipeline.config import BackendLimitSettings
from pipeline.errors import PermanentBackendError
from pipeline.qaoa.shapes import ShapeKey
from pipeline.qaoa.templates import build_ansatz

SHAPE = ShapeKey(4, ((0, 1), (1, 2), (2, 3), (0, 3), (0, 2)), (1, 3), 2, "test")
SHOTS = 20_000


def compiled(spec: str) -> tuple[QuantumCircuit, QuantumCircuit]:
    """The QAOA ansatz and its measured copy, compiled for ``spec``'s target."""
    ansatz = build_ansatz(SHAPE)
    measured = ansatz.copy()
    measured.measure_all()
    expectation, sampling = get_backend(spec, 16).target.pass_manager().run([ansatz, measured])
    return expectation, sampling


def values(circuit: QuantumCircuit, sets: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.2, 1.2, (sets, circuit.num_parameters))


def exact(circuit: QuantumCircuit, row: np.ndarray) -> dict[int, float]:
    """Each outcome's probability, outcome bit k being qubit k (Qiskit's little-endian)."""
    state = Statevector(circuit.remove_final_measurements(inplace=False).assign_parameters(row))
    return dict(enumerate(state.probabilities()))


def distance(counts: dict[str, int], probabilities: dict[int, float]) -> float:
    """Total variation between measured counts (Qiskit's bit strings) and probabilities."""
    shots = sum(counts.values())
    return apart({int(bits, 2): n / shots for bits, n in counts.items()}, probabilities)


def apart(one: dict[int, float], other: dict[int, float]) -> float:
    """Total variation between two distributions over outcomes."""
    return 0.5 * sum(abs(one.get(k, 0.0) - other.get(k, 0.0)) for k in set(one) | set(other))


# With 16 outcomes and 20,000 shots the expected total variation is ~0.01: 0.03 is far
# beyond shot noise, yet a reversed bit order or a wrong angle lands well above it.
BOUND = 0.03


def test_sampled_distributions_equal_the_exact_statevectors() -> None:
    _, sampling = compiled("braket-local")
    rows = values(sampling, 3)
    result = BackendCaller(get_backend("braket-local", 16)).sample([(sampling, rows)], SHOTS)
    measured = result[0].data.meas
    assert measured.shape == (3,) and measured.num_shots == SHOTS
    for b in range(3):
        assert distance(measured[b].get_counts(), exact(sampling, rows[b])) < BOUND
        other = exact(sampling, rows[(b + 1) % 3])  # another parameter set's: far off
        assert distance(measured[b].get_counts(), other) > 2 * BOUND


def test_estimates_from_shots_equal_exact_expectations() -> None:
    expectation, _ = compiled("braket-local")
    rows = values(expectation, 4, seed=2)
    layout = expectation.layout
    observable = SparsePauliOp.from_sparse_list(
        [("ZZ", [0, 1], 0.7), ("ZZ", [2, 3], -1.1), ("Z", [2], 0.4)], 4
    )
    observable = observable.apply_layout(layout) if layout is not None else observable
    pubs = [(expectation, [[observable]] * 4, rows[:, None, :])]
    result = BackendCaller(get_backend("braket-local", 16)).estimate(pubs)
    evs, stds = result[0].data.evs.ravel(), result[0].data.stds.ravel()
    for b in range(4):
        state = Statevector(expectation.assign_parameters(rows[b]))
        truth = float(np.real(state.expectation_value(observable)))
        assert abs(evs[b] - truth) <= 5 * stds[b] + 1e-9
        assert 0 < stds[b] < 0.1  # 1,024 shots a parameter set


def test_only_diagonal_observables_are_estimated() -> None:
    expectation, _ = compiled("braket-local")
    observable = SparsePauliOp.from_sparse_list([("X", [0], 1.0)], 4)
    pubs = [(expectation, [observable], values(expectation, 1)[0])]
    with pytest.raises(PermanentBackendError, match="not diagonal"):
        BackendCaller(get_backend("braket-local", 16)).estimate(pubs)


def test_calls_are_cut_to_the_devices_program_set_limits() -> None:
    """The local simulators declare 100 executables and 200,000 shots a task (read from the
    device's properties); with 10 a task, 25 parameter sets are 3 tasks, results in order;
    PUBs of two shot counts never share a task."""
    backend = get_backend("braket-local", 16)
    assert (backend.limits.executables_per_job, backend.limits.executions_per_job) == (
        100,
        200_000,
    )
    _, sampling = compiled("braket-local")
    policy = CallPolicy(limit_overrides=BackendLimitSettings(executables_per_job=10))
    caller = BackendCaller(backend, policy)
    result = caller.sample([(sampling, values(sampling, 25), 64)], 64)
    assert result[0].data.meas.shape == (25,) and caller.ledger.jobs == 3
    caller = BackendCaller(backend)
    caller.sample([(sampling, values(sampling, 2), 16), (sampling, values(sampling, 2), 32)], 16)
    assert caller.ledger.jobs == 2


def test_measured_bits_follow_the_classical_bits_not_the_qubits() -> None:
    """A circuit measuring qubit 2 into bit 0 and qubit 0 into bit 1 (qubit 1 idle)."""
    circuit = QuantumCircuit(3, 2)
    circuit.x(2)
    circuit.measure(2, 0)
    circuit.measure(0, 1)
    assert translate(circuit).clbit_qubits == (2, 0)
    result = BackendCaller(get_backend("braket-local", 16)).sample([(circuit,)], 50)
    assert result[0].data.c.get_counts() == {"01": 50}  # bit 0 set, bit 1 clear


def aer_noisy_distribution(circuit: QuantumCircuit, row: np.ndarray) -> dict[int, float]:
    """The exact distribution under braket-local:dm's noise, built independently in Aer:
    Braket's Depolarizing(p) leaves each Pauli with probability p/3, Qiskit's
    depolarizing_error(l) with l/4, so l = 4p/3 (two qubits: p/15 and l/16, l = 16p/15)."""
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error

    from pipeline.backends.braket import NOISE

    noise = NoiseModel()
    one, two, flip = NOISE["one_qubit"], NOISE["two_qubit"], NOISE["readout"]
    noise.add_all_qubit_quantum_error(
        depolarizing_error(4 * one / 3, 1), ["h", "x", "rx", "ry", "rz"]
    )
    noise.add_all_qubit_quantum_error(depolarizing_error(16 * two / 15, 2), ["rzz", "cx"])
    noise.add_all_qubit_readout_error(ReadoutError([[1 - flip, flip], [flip, 1 - flip]]))
    bound = circuit.assign_parameters(row)
    bound.remove_final_measurements()
    bound.save_density_matrix()
    simulator = AerSimulator(method="density_matrix", noise_model=noise)
    state = simulator.run(bound).result().data()["density_matrix"]
    probabilities = np.real(np.diag(np.asarray(state)))
    n = circuit.num_qubits  # readout error, applied to the exact diagonal bit by bit
    for qubit in range(n):
        tensor = probabilities.reshape([2] * n)
        axis = n - 1 - qubit
        flipped = np.flip(tensor, axis=axis)
        probabilities = ((1 - flip) * tensor + flip * flipped).reshape(-1)
    return dict(enumerate(probabilities))


def test_the_density_matrix_simulator_applies_its_declared_noise() -> None:
    """braket-local:dm's shots follow the noisy distribution computed independently, and
    differ from the ideal one by more than shot noise."""
    _, sampling = compiled("braket-local:dm")
    rows = values(sampling, 1, seed=3)
    result = BackendCaller(get_backend("braket-local:dm", 16)).sample([(sampling, rows)], SHOTS)
    counts = result[0].data.meas[0].get_counts()
    noisy = aer_noisy_distribution(sampling, rows[0])
    assert distance(counts, noisy) < 0.02
    assert apart(noisy, exact(sampling, rows[0])) > 0.04


def test_an_estimator_pub_with_a_precision_takes_its_shots() -> None:
    expectation, _ = compiled("braket-local")
    observable = SparsePauliOp.from_sparse_list([("Z", [0], 1.0)], 4)
    found = entries(
        Primitive.ESTIMATOR, [(expectation, observable, values(expectation, 1)[0], 0.05)], 0, 1024
    )
    assert found[0].shots == math.ceil(0.05**-2)


NUMBA_AFTER_BRAKET = """
import numba, numpy as np
from qiskit import QuantumCircuit
from flows.compute import local_cluster
from pipeline.backends import BackendCaller, get_backend


def main():
    circuit = QuantumCircuit(2, 2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure([0, 1], [0, 1])
    # Braket's parallel kernels compile (a fresh cache) and start Numba's threads.
    BackendCaller(get_backend("braket-local:dm", 8)).sample([(circuit,)], 50)
    with local_cluster(1):  # as a run starts its cluster
        pass

    @numba.njit(parallel=True)
    def total(x):
        s = 0.0
        for i in numba.prange(x.shape[0]):
            s += x[i]
        return s

    print("compiled after:", total(np.ones(10)))


if __name__ == "__main__":
    main()
"""


def test_numba_compiles_after_braket_and_a_cluster_in_one_process(tmp_path: Path) -> None:
    """Braket's simulator sets Numba's thread count to -1 as it loads, and a LocalCluster
    used to put NUMBA_NUM_THREADS in this process's environment: the next compilation then
    failed ("Cannot set NUMBA_NUM_THREADS ..."), which CI saw as a braket-local:dm run whose
    every batch fell back. In a fresh interpreter with a fresh Numba cache, as on a new
    machine."""
    script = tmp_path / "numba_after_braket.py"
    script.write_text(NUMBA_AFTER_BRAKET)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")
    done = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "compiled after: 10.0" in done.stdout
