"""QAOA circuit templates: one parameterised circuit per shape, compiled once, stored as QPY.

In a template both the problem's weights and the QAOA angles are circuit parameters
(``RZZ(2 * gamma_k * J_e)``, ``RZ(2 * gamma_k * h_i)``), so every problem of a shape
binds values into the same transpiled circuit (a pool's template has every pair, and a
problem's absent pairs bind weight 0). Templates are content-addressed by
shape, target, transpiler settings and SDK versions, and reused across runs and
processes: a warm store means zero transpiles.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import qiskit
import qiskit_aer
from qiskit import QuantumCircuit, qpy
from qiskit.circuit import ParameterVector

from pipeline.backends.base import Backend
from pipeline.private import make_folder
from pipeline.qaoa.shapes import ShapeKey

TEMPLATE_VERSION = 1


def build_ansatz(shape: ShapeKey) -> QuantumCircuit:
    """The QAOA circuit of a shape, without measurements, for the Ising energy to minimise."""
    gamma = ParameterVector("gamma", shape.reps)
    beta = ParameterVector("beta", shape.reps)
    h = ParameterVector("h", len(shape.linear))
    J = ParameterVector("J", len(shape.pairs))
    circuit = QuantumCircuit(shape.n_qubits, name=f"qaoa-{shape.label}")
    circuit.h(range(shape.n_qubits))
    for layer in range(shape.reps):
        for index, (i, j) in enumerate(shape.pairs):
            circuit.rzz(2 * gamma[layer] * J[index], i, j)
        for index, qubit in enumerate(shape.linear):
            circuit.rz(2 * gamma[layer] * h[index], qubit)
        circuit.rx(2 * beta[layer], range(shape.n_qubits))
    return circuit


@dataclass(frozen=True, eq=False)
class CompiledTemplate:
    """A shape's transpiled circuits: one for expectations, one with measurements for shots."""

    artifact_key: str
    shape: ShapeKey
    expectation_circuit: QuantumCircuit
    sampling_circuit: QuantumCircuit

    @cached_property
    def parameter_columns(self) -> dict[str, int]:
        return {p.name: column for column, p in enumerate(self.expectation_circuit.parameters)}

    def bind_values(
        self,
        gammas: npt.NDArray[np.float64],
        betas: npt.NDArray[np.float64],
        h: npt.NDArray[np.float64],
        J: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """Parameter values of shape (B, S, P) for B problems with S angle sets each.

        ``gammas``/``betas``: (B, S, reps); ``h``: (B, len(linear)); ``J``: (B, len(pairs)).
        Only the parameters the circuit has are bound: a shape with no cost terms (no
        pairs, no linear field) has no gamma, since its cost layer is empty. Fewer layers
        than the template's run a shallower QAOA exactly: the missing layers are bound to
        gamma = beta = 0, the identity.
        """
        batch, sets, layers = gammas.shape
        values = np.empty((batch, sets, len(self.parameter_columns)))
        columns = self.parameter_columns
        for layer in range(self.shape.reps):
            if (gamma := columns.get(f"gamma[{layer}]")) is not None:
                values[:, :, gamma] = gammas[:, :, layer] if layer < layers else 0.0
            values[:, :, columns[f"beta[{layer}]"]] = betas[:, :, layer] if layer < layers else 0.0
        for index in range(h.shape[1]):
            values[:, :, columns[f"h[{index}]"]] = h[:, index, None]
        for index in range(J.shape[1]):
            values[:, :, columns[f"J[{index}]"]] = J[:, index, None]
        return values


@dataclass(frozen=True)
class PackedTemplate:
    """A template pickled once per run, which every chunk's task carries with it.

    Not data scattered to the workers: that lives only on workers, so a worker's death
    cancelled every chunk needing it ("lost dependencies"), and a broadcast scatter could
    wait forever replicating from the dead worker. Nor a task the chunks depend on: the
    scheduler then tends to queue a batch's chunks on the one worker holding its result.
    Carried bytes are a few tens of KB per chunk (a pool's complete graph: 84 KiB at 14
    qubits and p=2, 0.5 MiB at 24 and p=3); each worker process unpickles a shape once.
    """

    artifact_key: str
    blob: bytes

    @classmethod
    def pack(cls, template: CompiledTemplate) -> PackedTemplate:
        return cls(template.artifact_key, pickle.dumps(template))

    def unpack(self) -> CompiledTemplate:
        return _unpacked(self)


@lru_cache(maxsize=32)
def _unpacked(packed: PackedTemplate) -> CompiledTemplate:
    template: CompiledTemplate = pickle.loads(packed.blob)
    return template


def artifact_key(shape: ShapeKey, backend: Backend) -> str:
    content = {
        "shape": shape.digest,
        "target": backend.target.label,
        "template_version": TEMPLATE_VERSION,
        "qiskit": qiskit.__version__,
        "qiskit_aer": qiskit_aer.__version__,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class TemplateLookup:
    template: CompiledTemplate
    reused: bool
    seconds: float


class TemplateStore:
    """Content-addressed QPY files under ``<home>/artifacts/templates``."""

    def __init__(self, root: Path) -> None:
        self.root = root / "templates"

    def path_for(self, key: str) -> Path:
        return self.root / f"{key}.qpy"

    def get(self, shape: ShapeKey, backend: Backend) -> TemplateLookup:
        """Load the shape's template, compiling and storing it first if it is not there."""
        started = time.perf_counter()
        key = artifact_key(shape, backend)
        path = self.path_for(key)
        if path.exists():
            with path.open("rb") as handle:
                expectation, sampling = qpy.load(handle)
            template = CompiledTemplate(key, shape, expectation, sampling)
            return TemplateLookup(template, True, time.perf_counter() - started)
        template = compile_template(shape, backend, key)
        self._write(path, template)
        return TemplateLookup(template, False, time.perf_counter() - started)

    def load(self, key: str, shape: ShapeKey) -> CompiledTemplate:
        with self.path_for(key).open("rb") as handle:
            expectation, sampling = qpy.load(handle)
        return CompiledTemplate(key, shape, expectation, sampling)

    def _write(self, path: Path, template: CompiledTemplate) -> None:
        buffer = io.BytesIO()
        qpy.dump([template.expectation_circuit, template.sampling_circuit], buffer)
        make_folder(path.parent)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")  # 0600
        with os.fdopen(handle, "wb") as out:
            out.write(buffer.getvalue())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)


def compile_template(shape: ShapeKey, backend: Backend, key: str) -> CompiledTemplate:
    """The shape's circuits transpiled for the backend's target; a pool on a device stays
    logical: its problems are each transpiled into a region of the chip when they run
    (pipeline.qaoa.packing), and a complete graph routed across the chip would serve none."""
    ansatz = build_ansatz(shape)
    measured = ansatz.copy()
    measured.measure_all()
    if shape.pooled and backend.target.is_device:
        return CompiledTemplate(key, shape, ansatz, measured)
    expectation, sampling = backend.target.pass_manager().run([ansatz, measured])
    return CompiledTemplate(key, shape, expectation, sampling)
