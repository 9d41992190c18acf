"""Where a device batch's problems sit: side by side on one circuit, or one circuit each.

A QPU bills the time the whole chip is busy, circuits times shots, however few of its
qubits a circuit uses: a 10-qubit problem alone on a 133-qubit device pays for 133.
:class:`SideBySide` (multi-programming) puts problems of one depth and shots on disjoint
regions of the chip (:func:`pipeline.backends.regions.choose_regions`: connected, best error
rates first, an idle qubit between any two), each transpiled into its own region by Qiskit's
preset pass manager on the region's coupling map (VF2Layout, else SabreLayout and
SabreSwap, never leaving the region), composed into one circuit of the device's width and
measured together: each problem's bits are read back from the classical bits its region
wrote. :class:`OnePerCircuit` is the same interface over the batch's template compiled for
the whole device, one problem a circuit (``quantum.packing = false``).

Both take angle sets ``(problems, sets, reps)`` and give, per problem, its shots at each
set as integers (bit k: variable k).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from qiskit import ClassicalRegister, QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector, ParameterVectorElement
from qiskit.transpiler import StagedPassManager, Target, generate_preset_pass_manager

from pipeline.backends.regions import Region, choose_regions
from pipeline.errors import FallbackRequired
from pipeline.qaoa.sampling import outcomes_as_integers
from pipeline.qaoa.shapes import ShapeKey
from pipeline.qaoa.templates import CompiledTemplate, build_ansatz

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Pub = tuple[QuantumCircuit, FloatArray, int]  # a sampler PUB: circuit, values, shots
Pairs = tuple[tuple[int, int], ...]

# Level 2 routes a 10-node 3-regular graph inside a 10-qubit heavy-hex region with 5 % fewer
# CZs and a quarter less depth than level 1 (~33 ms against ~23 ms a problem); level 3 gains
# nothing more. Measured on fake_torino's regions.
REGION_OPTIMIZATION_LEVEL = 2
# Instructions of a device target a QAOA circuit never needs in its region.
_NOT_NEEDED = {"delay", "for_loop", "if_else", "switch_case", "while_loop", "reset"}


class Placement(ABC):
    """How a batch's problems become sampler PUBs, and how their shots come back out."""

    qubits: list[tuple[int, ...]]  # each problem's physical qubits

    @abstractmethod
    def pubs(self, gammas: FloatArray, betas: FloatArray) -> list[Pub]:
        """The PUBs sampling every problem at each of its angle sets, ``(B, S, reps)``."""

    @abstractmethod
    def outcomes(self, result: Any) -> list[IntArray]:
        """Each problem's shots at each set, ``(S, shots)``, from the sampler's result."""


class OnePerCircuit(Placement):
    """The batch's template, compiled for the whole device, bound once per problem."""

    def __init__(
        self, template: CompiledTemplate, h: FloatArray, J: FloatArray, shots: Sequence[int]
    ) -> None:
        self.template, self.h, self.J = template, h, J
        self.groups = _by_shots(shots)
        layout = template.sampling_circuit.layout
        physical = (
            tuple(layout.final_index_layout()[: template.shape.n_qubits])
            if layout is not None
            else tuple(range(template.shape.n_qubits))
        )
        self.qubits = [physical] * len(shots)

    def pubs(self, gammas: FloatArray, betas: FloatArray) -> list[Pub]:
        values = self.template.bind_values(gammas, betas, self.h, self.J)
        circuit = self.template.sampling_circuit
        return [(circuit, values[rows], shots) for shots, rows in self.groups.items()]

    def outcomes(self, result: Any) -> list[IntArray]:
        found: list[IntArray] = [np.zeros((0, 0), dtype=np.int64)] * len(self.qubits)
        for pub_result, rows in zip(result, self.groups.values(), strict=True):
            shots = outcomes_as_integers(pub_result.data.meas)  # (rows, S, shots)
            for position, b in enumerate(rows):
                found[b] = shots[position]
        return found


@dataclass(frozen=True)
class _Seat:
    """One problem in a packed circuit: which PUB, which slot (region), which clbits."""

    pub: int
    slot: int
    clbits: tuple[int, ...]


class SideBySide(Placement):
    """Problems of one shots count packed onto disjoint regions, as many a circuit as fit:
    the regions where the batch's first problem keeps ``fidelity`` of its best estimated
    success probability (:func:`fitting_regions`)."""

    def __init__(
        self,
        target: Target,
        shape: ShapeKey,
        h: FloatArray,
        J: FloatArray,
        shots: Sequence[int],
        fidelity: float = 0.0,
    ) -> None:
        first = tuple(pair for pair, w in zip(shape.pairs, J[0], strict=True) if w)
        regions = fitting_regions(target, shape, first, fidelity)
        if not regions:  # the batch's problems go to CP-SAT, labelled with this
            raise FallbackRequired(
                f"no region of {shape.n_qubits} connected working qubits on the device to pack into"
            )
        self.seats: list[_Seat] = [_Seat(0, 0, ())] * len(shots)
        self.qubits = [()] * len(shots)
        self.circuits: list[QuantumCircuit] = []  # one PUB each
        self.pub_shots: list[int] = []
        for count, rows in _by_shots(shots).items():
            for start in range(0, len(rows), len(regions)):
                members = rows[start : start + len(regions)]
                self.circuits.append(self._pack(target, shape, (h, J), members, regions))
                self.pub_shots.append(count)

    def _pack(
        self,
        target: Target,
        shape: ShapeKey,
        weights: tuple[FloatArray, FloatArray],
        members: list[int],
        regions: Sequence[Region],
    ) -> QuantumCircuit:
        """One circuit of the device's width: ``members`` on the best regions, in order."""
        n, (h, J), pub = shape.n_qubits, weights, len(self.circuits)
        packed = QuantumCircuit(target.num_qubits)
        packed.add_register(ClassicalRegister(n * len(members), "meas"))
        for slot, b in enumerate(members):
            region = regions[slot]
            logical = _problem_circuit(shape, h[b], J[b], slot)
            placed = _region_pass_manager(target, region.qubits).run(logical)
            clbits = tuple(range(slot * n, (slot + 1) * n))
            packed.compose(placed, qubits=list(region.qubits), clbits=list(clbits), inplace=True)
            self.seats[b] = _Seat(pub, slot, clbits)
            self.qubits[b] = region.qubits
        return packed

    def pubs(self, gammas: FloatArray, betas: FloatArray) -> list[Pub]:
        pubs: list[Pub] = []
        for index, circuit in enumerate(self.circuits):
            columns = {p.name: c for c, p in enumerate(circuit.parameters)}
            values = np.zeros((gammas.shape[1], len(columns)))
            for b, seat in enumerate(self.seats):
                if seat.pub != index:
                    continue
                # Layers past the angles given stay 0, the identity; a problem with no cost
                # term has no gamma in its circuit.
                for layer in range(gammas.shape[2]):
                    if (gamma := columns.get(f"g{seat.slot}[{layer}]")) is not None:
                        values[:, gamma] = gammas[b, :, layer]
                    values[:, columns[f"b{seat.slot}[{layer}]"]] = betas[b, :, layer]
            pubs.append((circuit, values, self.pub_shots[index]))
        return pubs

    def outcomes(self, result: Any) -> list[IntArray]:
        return [
            outcomes_as_integers(result[seat.pub].data.meas.slice_bits(list(seat.clbits)))
            for seat in self.seats
        ]


def _by_shots(shots: Sequence[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for b, count in enumerate(shots):
        groups.setdefault(count, []).append(b)
    return groups


def _problem_circuit(shape: ShapeKey, h: FloatArray, J: FloatArray, slot: int) -> QuantumCircuit:
    """One problem's measured QAOA circuit: its own pairs only (a pool's absent pairs are
    left out, not bound to 0, so routing never pays for them), its weights bound, its angles
    free and named by its slot (``g0[1]``: slot 0's gamma of layer 1) so slots never clash."""
    pairs = tuple(pair for pair, w in zip(shape.pairs, J, strict=True) if w)
    own = ShapeKey(shape.n_qubits, pairs, shape.linear, shape.reps, shape.target)
    circuit = build_ansatz(own)
    circuit.measure_all()
    weights = [w for w in J if w]
    gamma = ParameterVector(f"g{slot}", shape.reps)
    beta = ParameterVector(f"b{slot}", shape.reps)
    values = {"J": weights, "h": list(h), "gamma": gamma, "beta": beta}
    binding: dict[Parameter, Any] = {
        p: values[p.vector.name][p.index]  # build_ansatz's parameters are vector elements
        for p in circuit.parameters
        if isinstance(p, ParameterVectorElement)
    }
    return circuit.assign_parameters(binding)


def fitting_regions(
    target: Target, shape: ShapeKey, pairs: Pairs, fidelity: float
) -> tuple[Region, ...]:
    """The chip's regions (:func:`choose_regions`) where a problem of ``shape`` with ``pairs``
    keeps at least ``fidelity`` of the estimated success probability it has in the best of
    them, best first. The region's own error score averages couplers and readouts alike; a
    routed circuit uses each coupler a dozen times, so one poor coupler or readout costs far
    more than the score shows: the circuit that will run, transpiled into each region, is the
    measure (on fake_torino, 10-node 3-regular at p=2: 0.02 to 0.42 across its regions)."""
    return _fitting(target, shape.n_qubits, pairs, shape.linear, shape.reps, fidelity)


@lru_cache(maxsize=64)
def _fitting(
    target: Target,
    n_qubits: int,
    pairs: Pairs,
    linear: tuple[int, ...],
    reps: int,
    fidelity: float,
) -> tuple[Region, ...]:
    probe_shape = ShapeKey(n_qubits, pairs, linear, reps, "probe")
    probe = _problem_circuit(probe_shape, np.ones(len(linear)), np.ones(len(pairs)), 0)
    regions = choose_regions(target, n_qubits)
    scores = [
        success_probability(target, _region_pass_manager(target, r.qubits).run(probe), r.qubits)
        for r in regions
    ]
    best = max(scores, default=0.0)
    ranked = sorted(zip(scores, regions, strict=True), key=lambda pair: -pair[0])
    return tuple(region for score, region in ranked if score >= fidelity * best)


def success_probability(target: Target, circuit: QuantumCircuit, qubits: Sequence[int]) -> float:
    """The estimated success probability of ``circuit`` (on qubits numbered in ``qubits``'s
    order): the product of 1 - error over its gates and readouts, as the target states them
    (Nishio et al., ACM JETC 16, 32, 2020); decoherence while idle is not in it."""
    log_success = 0.0
    for instruction in circuit.data:
        physical = tuple(qubits[circuit.find_bit(q).index] for q in instruction.qubits)
        name = instruction.operation.name
        calibration = target[name].get(physical) if name in target.operation_names else None
        if calibration is not None and calibration.error is not None:
            log_success += math.log1p(-min(calibration.error, 1 - 1e-12))
    return math.exp(log_success)


@cache
def _region_pass_manager(target: Target, qubits: tuple[int, ...]) -> StagedPassManager:
    """The device's preset pass manager confined to ``qubits``: their couplers and their error
    rates, so layout and routing never leave the region and still prefer its better qubits."""
    return generate_preset_pass_manager(
        optimization_level=REGION_OPTIMIZATION_LEVEL,
        target=_region_target(target, qubits),
        seed_transpiler=0,
    )


def _region_target(target: Target, qubits: tuple[int, ...]) -> Target:
    """The part of ``target`` on ``qubits``, renumbered from 0 in their order: each gate with
    the calibration (error, duration) it has there."""
    local = {q: k for k, q in enumerate(qubits)}
    region = Target(num_qubits=len(qubits), dt=target.dt)
    for name in target.operation_names:
        if name in _NOT_NEEDED:
            continue
        properties = target[name]
        region.add_instruction(
            target.operation_from_name(name),
            {
                tuple(local[q] for q in qargs): calibration
                for qargs, calibration in properties.items()
                if qargs is not None and all(q in local for q in qargs)
            },
            name=name,
        )
    return region
