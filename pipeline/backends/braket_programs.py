"""Qiskit primitive calls as Amazon Braket program sets, and Braket's results as Qiskit's.

The engine speaks Qiskit's primitives (PUBs in, ``PrimitiveResult`` out) to every backend;
this module is where Braket meets it. A compiled template (a Qiskit circuit whose gate angles
are expressions of its parameters) is translated once per circuit into a Braket ``Circuit``
whose angles are ``FreeParameter`` expressions; a call's PUBs become one ``ProgramSet`` of
``CircuitBinding``s, every parameter set of a PUB one input set (one task, many executables:
Braket's way to run parameter sweeps, docs.aws.amazon.com/braket/latest/developerguide/
braket-batching-tasks.html).

An estimator PUB is sampled, not sent with Braket observables: QAOA's observables are sums
of Z strings, which all commute, so one measurement of every qubit per parameter set gives
every term's expectation. Braket's own observables in a program set would make an executable
of every term of a ``Sum``: a 12-node MaxCut's 18 terms, 18 times the shots and the price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sympy
from braket.circuits import Circuit
from braket.parametric import FreeParameterExpression
from braket.program_sets import CircuitBinding, ProgramSet
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterExpression
from qiskit.primitives.containers import (
    BitArray,
    DataBin,
    PrimitiveResult,
    PubResult,
    SamplerPubResult,
)
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import SparseObservable

from pipeline.backends.base import Primitive
from pipeline.errors import PermanentBackendError

# Qiskit gate -> (Braket Circuit method, number of angle arguments). The Braket targets
# compile to these gates only (pipeline.backends.braket), so nothing else reaches here.
# Braket's ZZ(theta) is exp(-i theta/2 Z(x)Z), as Qiskit's RZZ(theta).
GATES = {
    "h": ("h", 0),
    "x": ("x", 0),
    "rx": ("rx", 1),
    "ry": ("ry", 1),
    "rz": ("rz", 1),
    "rzz": ("zz", 1),
    "cx": ("cnot", 0),
    "cz": ("cz", 0),
}
IGNORED = {"barrier", "delay"}


@dataclass(frozen=True)
class Translated:
    """A circuit in Braket's terms: the circuit, its inputs' names in the order of the Qiskit
    circuit's parameters, and for each classical bit the qubit it reads (None: not measured)."""

    circuit: Circuit
    inputs: tuple[str, ...]
    clbit_qubits: tuple[int | None, ...]
    registers: tuple[tuple[str, int], ...]  # (name, size) of each classical register, in order


def translate(circuit: QuantumCircuit) -> Translated:
    """The Braket circuit of a transpiled Qiskit circuit, measured at the end (the qubits its
    classical bits read, or every qubit it uses: an estimator's circuit), with a record of
    which qubit each classical bit reads."""
    names = {parameter: f"p{index}" for index, parameter in enumerate(circuit.parameters)}
    braket = Circuit()
    reads: dict[int, int] = {}
    for instruction in circuit.data:
        name = instruction.operation.name
        qubits = [circuit.find_bit(q).index for q in instruction.qubits]
        if name == "measure":
            reads[circuit.find_bit(instruction.clbits[0]).index] = qubits[0]
        elif name not in IGNORED:
            method, angles = _gate(name)
            arguments = [_angle(p, names) for p in instruction.operation.params[:angles]]
            getattr(braket, method)(*qubits, *arguments)
    used = {int(q) for instr in braket.instructions for q in instr.target}
    measured = sorted(set(reads.values()) if reads else used)
    for qubit in measured:  # Braket drops idle qubits: one measured keeps its place
        if qubit not in used:
            braket.i(qubit)
    if measured:  # measured explicitly, where a noise model's readout errors apply
        braket.measure(measured)
    return Translated(
        braket,
        tuple(names[p] for p in circuit.parameters),
        tuple(reads.get(c) for c in range(circuit.num_clbits)),
        tuple((register.name, register.size) for register in circuit.cregs),
    )


def _gate(name: str) -> tuple[str, int]:
    if name not in GATES:
        raise PermanentBackendError(f"gate {name!r} has no Braket translation here")
    return GATES[name]


def _angle(value: Any, names: dict[Any, str]) -> Any:
    """A gate angle: a number, or a Braket expression of the renamed parameters (Braket
    names must be identifiers; Qiskit's are ``gamma[0]``)."""
    if not isinstance(value, ParameterExpression):
        return float(value)
    if not value.parameters:
        return float(value)
    expression = value.sympify()
    renamed = {sympy.Symbol(p.name): sympy.Symbol(names[p]) for p in value.parameters}
    return FreeParameterExpression(expression.subs(renamed))


# -- a call as a program set ------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One PUB as a program set entry: its translation, its shape and its parameter rows."""

    translated: Translated
    shape: tuple[int, ...]
    rows: npt.NDArray[np.float64]  # (executables, parameters), one row per parameter set
    shots: int
    pub: SamplerPub | EstimatorPub


def entries(
    kind: Primitive,
    pubs: Sequence[Any],
    shots: int,
    estimator_shots: int,
    translate_one: Callable[[QuantumCircuit], Translated] = translate,
) -> list[Entry]:
    """The call's PUBs as entries (an estimator PUB's shots from its precision, else
    ``estimator_shots``)."""
    found = []
    for raw in pubs:
        if kind == Primitive.SAMPLER:
            pub: SamplerPub | EstimatorPub = SamplerPub.coerce(raw, shots)
            values = pub.parameter_values
            count = pub.shots if isinstance(pub, SamplerPub) else shots
        else:
            pub = EstimatorPub.coerce(raw)
            values = pub.parameter_values
            precision = pub.precision
            count = math.ceil(precision**-2) if precision else estimator_shots
        circuit = pub.circuit
        array = values.as_array(circuit.parameters) if circuit.num_parameters else None
        rows = (
            array.reshape(-1, circuit.num_parameters)
            if array is not None
            else np.zeros((max(values.size, 1), 0))
        )
        found.append(Entry(translate_one(circuit), values.shape, rows, count, pub))
    return found


def program_set(found: Sequence[Entry]) -> ProgramSet:
    """One program set of every entry, all at one number of shots an executable."""
    shots = {entry.shots for entry in found}
    if len(shots) != 1:
        raise PermanentBackendError(f"a program set runs one number of shots, not {sorted(shots)}")
    programs: list[Any] = []
    for entry in found:
        circuit = entry.translated.circuit
        if entry.translated.inputs:
            input_sets = {
                name: entry.rows[:, column].tolist()
                for column, name in enumerate(entry.translated.inputs)
            }
            programs.append(CircuitBinding(circuit, input_sets=input_sets))
        else:
            programs.extend(circuit for _ in range(len(entry.rows)))
    return ProgramSet(programs, shots_per_executable=shots.pop())


# -- Braket's results as Qiskit's ---------------------------------------------------------------
def qiskit_result(kind: Primitive, found: Sequence[Entry], result: Any) -> PrimitiveResult[Any]:
    """Braket's ``ProgramSetQuantumTaskResult`` as the ``PrimitiveResult`` one Qiskit primitive
    call returns: a BitArray per classical register, or ``evs``/``stds``."""
    executables = _executables(found, result)
    out: list[Any] = []
    for entry, measured in zip(found, executables, strict=True):
        if kind == Primitive.SAMPLER:
            out.append(_sampled(entry, measured))
        else:
            out.append(_estimated(entry, measured))
    return PrimitiveResult(out, metadata={"version": 2})


def _executables(found: Sequence[Entry], result: Any) -> list[list[npt.NDArray[np.int8]]]:
    """Each entry's executables' shots, as (shots, qubits) arrays indexed by qubit number."""
    flat = [executable for composite in result.entries for executable in composite.entries]
    grouped: list[list[npt.NDArray[np.int8]]] = []
    position = 0
    for entry in found:
        count = len(entry.rows)
        grouped.append([_by_qubit(flat[position + k]) for k in range(count)])
        position += count
    if position != len(flat):
        raise PermanentBackendError(f"Braket returned {len(flat)} executables, expected {position}")
    return grouped


def _by_qubit(executable: Any) -> npt.NDArray[np.int8]:
    """Shots as (shots, highest qubit + 1), column q being qubit q (0 where not measured)."""
    measurements = np.asarray(executable.measurements, dtype=np.int8)
    qubits = [int(q) for q in executable.measured_qubits]
    out = np.zeros((measurements.shape[0], max(qubits, default=-1) + 1), dtype=np.int8)
    out[:, qubits] = measurements
    return out


def _sampled(entry: Entry, shots: list[npt.NDArray[np.int8]]) -> SamplerPubResult:
    """A sampler PUB's result: each register's bits, bit k of register r read from its qubit."""
    reads = entry.translated.clbit_qubits
    fields: dict[str, BitArray] = {}
    start = 0
    for name, size in entry.translated.registers:
        columns = reads[start : start + size]
        bits = np.stack([_columns(s, columns) for s in shots]) if shots else np.zeros((0, 0, size))
        bits = bits.reshape(*entry.shape, entry.shots, size)
        fields[name] = BitArray.from_bool_array(bits.astype(bool), order="little")
        start += size
    return SamplerPubResult(
        DataBin(**fields, shape=entry.shape),
        metadata={"shots": entry.shots, "circuit_metadata": {}},
    )


def _columns(shots: npt.NDArray[np.int8], qubits: Sequence[int | None]) -> npt.NDArray[np.int8]:
    out = np.zeros((shots.shape[0], len(qubits)), dtype=np.int8)
    for bit, qubit in enumerate(qubits):
        if qubit is not None and qubit < shots.shape[1]:
            out[:, bit] = shots[:, qubit]
    return out


def _estimated(entry: Entry, shots: list[npt.NDArray[np.int8]]) -> PubResult:
    """An estimator PUB's result from its parameter sets' shots: every observable (a sum of
    Z strings) averaged over the shots of the parameter set it broadcasts with."""
    pub = entry.pub
    assert isinstance(pub, EstimatorPub)
    shape = pub.shape
    observables = pub.observables.sparse_observables_array()
    values_index = np.broadcast_to(
        np.arange(pub.parameter_values.size).reshape(pub.parameter_values.shape), shape
    )
    observable_index = np.broadcast_to(
        np.arange(observables.size).reshape(observables.shape), shape
    )
    evs = np.empty(shape)
    stds = np.empty(shape)
    flat_observables = observables.reshape(-1)
    for index in np.ndindex(shape):
        spins = 1 - 2 * shots[int(values_index[index])].astype(np.float64)  # bit 0 -> Z = +1
        per_shot = _diagonal(flat_observables[int(observable_index[index])], spins)
        evs[index] = per_shot.mean()
        stds[index] = per_shot.std() / math.sqrt(len(per_shot))
    return PubResult(
        DataBin(evs=evs, stds=stds, shape=shape),
        metadata={"shots": entry.shots, "target_precision": 1 / math.sqrt(entry.shots)},
    )


def _diagonal(observable: Any, spins: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each shot's value of a sum of Z strings; Braket measures in Z only, so anything else
    is refused."""
    values = np.zeros(spins.shape[0])
    for term in observable:
        if any(bit != SparseObservable.BitTerm.Z for bit in term.bit_terms):
            raise PermanentBackendError(
                f"observable term {term} is not diagonal: only Z strings are estimated on Braket"
            )
        product = np.ones(spins.shape[0])
        for qubit in term.indices:
            if qubit < spins.shape[1]:
                product *= spins[:, qubit]
        values += float(np.real(term.coeff)) * product
    return values
