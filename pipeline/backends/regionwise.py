"""A sampler that simulates a packed circuit one component at a time, exactly.

On a device, a packed circuit (several problems side by side on disjoint regions,
measured together) runs at once. A 133-qubit noisy circuit cannot be simulated whole, but
Aer's noise models of fake devices are local: errors per qubit and per coupler, readout
per qubit, no crosstalk. Qubits that share no gate then evolve independently, so the
joint outcome distribution of the circuit's components is the product of theirs:
sampling each component on its own (density matrix, the device's noise model) and
putting each shot's bits side by side is exact, not an approximation.

Each component keeps the circuit's full width and its physical qubit indices (the
noise model is keyed by them) and loses every other component's instructions; Aer then
truncates the idle qubits, so a component of 10 qubits costs a 10-qubit density matrix.
All components of all parameter sets of the pubs with the same shots go to Aer as one
list: one call pays the noise model's set-up once. That set-up serialises every error of
the noise model (~1 s for a 133-qubit device), so the call gets a copy of the noise
model holding only the errors of the qubits it touches: the same simulation, bit for
bit (ten 10-qubit regions of fake_torino, 1024 shots: 3.2 s instead of 4.2 s).

Seeds: the pubs with the same shots run as one Aer call whose seed comes from (seed,
index of the first such pub); Aer gives each experiment of a call its own seed from its
position, and positions follow (pub, parameter index, component), so a run repeats
exactly. Clbits that no component measures read 0, as on Aer.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Barrier
from qiskit.primitives import BaseSamplerV2
from qiskit.primitives.containers import BitArray, DataBin, PrimitiveResult, SamplerPubResult
from qiskit.primitives.containers.sampler_pub import SamplerPub, SamplerPubLike
from qiskit.primitives.primitive_job import PrimitiveJob
from qiskit.result import Result
from qiskit_aer import AerError, AerSimulator
from qiskit_aer.noise import NoiseModel

from pipeline.backends.devices import STAND_IN_QUBITS


class RegionwiseSampler(BaseSamplerV2):
    """SamplerV2 over a noise model whose errors are local: components sampled apart.

    Results look exactly like qiskit-aer's ``SamplerV2``'s: one ``BitArray`` per
    classical register, shaped like the pub's parameter values, bits in the same order.
    """

    def __init__(self, noise_model: NoiseModel, default_shots: int, seed: int) -> None:
        self.noise_model = noise_model
        self.default_shots = default_shots
        self.seed = seed

    def run(
        self, pubs: Iterable[SamplerPubLike], *, shots: int | None = None
    ) -> PrimitiveJob[PrimitiveResult[SamplerPubResult]]:
        """Submit the pubs as one job (a circuit, optional parameter values, optional shots)."""
        default = self.default_shots if shots is None else shots
        coerced = [SamplerPub.coerce(pub, default) for pub in pubs]
        job: PrimitiveJob[PrimitiveResult[SamplerPubResult]] = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[SamplerPub]) -> PrimitiveResult[SamplerPubResult]:
        by_shots: dict[int, list[int]] = defaultdict(list)
        for i, pub in enumerate(pubs):
            by_shots[pub.shots].append(i)
        results: dict[int, SamplerPubResult] = {}
        for shots, indices in by_shots.items():
            seed = int(np.random.SeedSequence([self.seed, indices[0]]).generate_state(1)[0])
            plans = [_Plan.of(pubs[i]) for i in indices]
            results.update(zip(indices, self._sample(plans, shots, seed), strict=True))
        return PrimitiveResult([results[i] for i in range(len(pubs))], metadata={"version": 2})

    def _sample(self, plans: list[_Plan], shots: int, seed: int) -> list[SamplerPubResult]:
        """Every plan's experiments in one Aer call per method, then each pub's result."""
        experiments = [circuit for plan in plans for circuit in plan.experiments()]
        touched = {q for plan in plans for part in plan.parts for q in part.qubits}
        noise = _restricted(self.noise_model, touched)
        memories: list[list[str]] = [[] for _ in experiments]
        for method, indices in _by_method(experiments).items():
            simulator = AerSimulator(noise_model=noise, method=method, max_parallel_threads=1)
            chosen = [experiments[i] for i in indices]
            result = simulator.run(chosen, shots=shots, seed_simulator=seed, memory=True)
            for i, memory in zip(indices, _memories(result.result(), shots), strict=True):
                memories[i] = memory
        stream = iter(memories)  # in the order of the plans' experiments
        return [plan.result(stream, shots) for plan in plans]


def _by_method(experiments: list[QuantumCircuit]) -> dict[str, list[int]]:
    """Experiments by simulation method: a density matrix up to ``STAND_IN_QUBITS`` active
    qubits (16 * 4**12 bytes = 256 MiB; the fastest there), noisy statevector trajectories
    above, each shot one trajectory, as exact and 2**n in memory: a circuit routed through a
    few extra qubits on the whole chip (unpacked) would need 4 GiB at 14 and 17 at 15."""
    found: dict[str, list[int]] = defaultdict(list)
    for index, circuit in enumerate(experiments):
        active = {q for instruction in circuit.data for q in instruction.qubits}
        method = "density_matrix" if len(active) <= STAND_IN_QUBITS else "statevector"
        found[method].append(index)
    return found


def components(circuit: QuantumCircuit) -> list[tuple[list[int], list[int]]]:
    """The circuit's independent parts: (qubits, clbits) of each group of qubits joined by
    instructions on several qubits, with the clbits measured from (or read by) them.

    Barriers join nothing: they order compilation, and a simulator ignores them. Qubits
    that no instruction touches belong to no component. Ordered by lowest qubit.
    """
    width = circuit.num_qubits
    parent = list(range(width + circuit.num_clbits))

    def root(bit: int) -> int:
        while parent[bit] != bit:
            parent[bit] = parent[parent[bit]]
            bit = parent[bit]
        return bit

    used: set[int] = set()
    for bits in _operands(circuit):
        used.update(bits)
        for bit in bits[1:]:
            parent[root(bit)] = root(bits[0])
    groups: dict[int, list[int]] = defaultdict(list)
    for bit in sorted(used):
        groups[root(bit)].append(bit)
    return [
        ([b for b in group if b < width], [b - width for b in group if b >= width])
        for group in groups.values()
        if group[0] < width  # has a qubit
    ]


def _operands(circuit: QuantumCircuit) -> Iterator[list[int]]:
    """Each instruction's qubits, then its clbits offset by the width (a barrier: none)."""
    width = circuit.num_qubits
    for instruction in circuit.data:
        if isinstance(instruction.operation, Barrier):
            yield []
        else:
            qubits = [circuit.find_bit(q).index for q in instruction.qubits]
            yield qubits + [width + circuit.find_bit(c).index for c in instruction.clbits]


@dataclass(frozen=True)
class _Part:
    """One measured component: its qubits, clbits and the circuit with only its gates."""

    qubits: list[int]
    clbits: list[int]
    circuit: QuantumCircuit


@dataclass(frozen=True)
class _Plan:
    """A pub split into its measured components, simulated for each parameter set."""

    pub: SamplerPub
    parts: list[_Part]

    @classmethod
    def of(cls, pub: SamplerPub) -> _Plan:
        """Components without clbits are left out: nothing of theirs is ever seen."""
        measured = [(q, c) for q, c in components(pub.circuit) if c]
        circuits = _split(pub.circuit, measured)
        return cls(pub, [_Part(q, c, s) for (q, c), s in zip(measured, circuits, strict=True)])

    def experiments(self) -> Iterator[QuantumCircuit]:
        """Each part bound to each parameter set: parameter index first, then part."""
        values = self.pub.parameter_values
        for loc in np.ndindex(values.shape):
            binding = {
                name: value
                for names, array in values.data.items()
                for name, value in zip(names, array[loc], strict=True)
            }
            for part in self.parts:
                yield part.circuit.assign_parameters(binding, strict=False)

    def result(self, memories: Iterator[list[str]], shots: int) -> SamplerPubResult:
        """The pub's result from its experiments' memories, taken from ``memories`` in the
        order of :meth:`experiments`: each part's bits at their clbit positions."""
        circuit = self.pub.circuit
        shape = self.pub.parameter_values.shape
        bits = np.zeros((*shape, shots, circuit.num_clbits), dtype=bool)
        for loc in np.ndindex(shape):
            for part in self.parts:
                sampled = _unpack(next(memories), circuit.num_clbits)
                bits[loc][:, part.clbits] = sampled[:, part.clbits]
        arrays = {}
        for creg in circuit.cregs:
            # Big-endian: the register's last bit first, as qiskit prints and Aer returns.
            columns = [circuit.find_bit(bit).index for bit in reversed(creg)]
            arrays[creg.name] = BitArray.from_bool_array(bits[..., columns], order="big")
        return SamplerPubResult(
            DataBin(**arrays, shape=shape),
            metadata={"shots": shots, "circuit_metadata": circuit.metadata},
        )


def _split(
    circuit: QuantumCircuit, groups: list[tuple[list[int], list[int]]]
) -> list[QuantumCircuit]:
    """For each (qubits, clbits) group, the circuit (full width, same registers) with only
    the group's instructions; barriers dropped."""
    width = circuit.num_qubits
    owner = {q: i for i, (qubits, _) in enumerate(groups) for q in qubits}
    owner |= {width + c: i for i, (_, clbits) in enumerate(groups) for c in clbits}
    parts = [circuit.copy_empty_like() for _ in groups]
    for instruction, bits in zip(circuit.data, _operands(circuit), strict=True):
        if bits and bits[0] in owner:
            parts[owner[bits[0]]].append(instruction, copy=False)
    return parts


def _memories(result: Result, shots: int) -> list[list[str]]:
    """Each experiment's shots as hex strings (zeros where it measured nothing, as in
    Aer's sampler); an experiment that failed raises."""
    out = []
    for experiment in result.results:
        if not experiment.success:
            raise AerError(f"Aer simulation failed: {experiment.status}")
        out.append(getattr(experiment.data, "memory", None) or ["0x0"] * shots)
    return out


def _unpack(memory: list[str], num_clbits: int) -> np.ndarray:
    """Hex shots as booleans, shape (shots, num_clbits), column ``c`` for clbit ``c``."""
    width = max(1, (num_clbits + 7) // 8)
    raw = b"".join(int(shot, 16).to_bytes(width, "little") for shot in memory)
    packed = np.frombuffer(raw, dtype=np.uint8).reshape(len(memory), width)
    return np.unpackbits(packed, axis=1, bitorder="little")[:, :num_clbits].astype(bool)


def _restricted(noise_model: NoiseModel, qubits: set[int]) -> NoiseModel:
    """A copy of ``noise_model`` holding only the local errors within ``qubits``.

    An error on a qubit (or coupler) that no instruction touches never applies, so the
    simulation is unchanged, bit for bit under the same seed, but Aer serialises the
    noise model on every call, ~1 s for a 133-qubit device. NoiseModel offers no public
    way to filter its errors; this filters its
    two dicts of local errors (qiskit-aer 0.18) and keeps the rest (basis gates, default
    errors, the relaxation pass for delays) shared.
    """
    restricted = copy.copy(noise_model)
    restricted._local_quantum_errors = {
        name: {where: error for where, error in errors.items() if qubits.issuperset(where)}
        for name, errors in noise_model._local_quantum_errors.items()
    }
    restricted._local_readout_errors = {
        where: error
        for where, error in noise_model._local_readout_errors.items()
        if qubits.issuperset(where)
    }
    restricted._noise_qubits = noise_model._noise_qubits & qubits
    return restricted
