"""Qiskit Aer, the default backend: exact statevector expectations and sampled shots.

Aer runs one thread per call here: inside Dask workers each process owns one core, and
Aer's own threading collapses under contention (see MEASUREMENTS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import qiskit_aer
from qiskit.circuit.equivalence_library import SessionEquivalenceLibrary
from qiskit.transpiler import ConditionalController, PassManager, StagedPassManager, Target
from qiskit.transpiler.passes import BasisTranslator, GatesInBasis
from qiskit_aer import AerError, AerSimulator
from qiskit_aer.primitives import EstimatorV2, SamplerV2

from pipeline.backends.base import (
    Backend,
    Capabilities,
    CompileTarget,
    ErrorRule,
    ErrorTable,
    Primitive,
    PrimitiveRunner,
    StatevectorCosts,
)
from pipeline.backends.limits import LOCAL_SIMULATOR
from pipeline.errors import ConfigError, PermanentBackendError
from pipeline.vocabulary import SolverPath

_BACKEND_OPTIONS = {"method": "statevector", "max_parallel_threads": 1}

# Aer fails only on what it is given (a circuit too large, an unsupported instruction).
ERRORS = ErrorTable((ErrorRule((AerError,), PermanentBackendError),))


class AerTarget(CompileTarget):
    """Aer's own target: every qubit connected, a wide basis.

    Its pass manager only translates gates outside Aer's basis. A preset one (level 1)
    loads every installed transpiler stage plugin first, ~0.8 s in a fresh process
    (qiskit-ibm-runtime's among them), and gives the same circuits for the QAOA ansatz
    (h, rzz, rz, rx, measure: no layout on an all-to-all target, nothing to route, and
    parameterised rotations left as they are); tests hold the two equal.
    """

    @cached_property
    def simulator(self) -> AerSimulator:
        return AerSimulator(**_BACKEND_OPTIONS)

    @property
    def label(self) -> str:
        return f"aer-statevector-{qiskit_aer.__version__}-basis"

    @property
    def transpiler_target(self) -> Target:
        return self.simulator.target

    def _build_pass_manager(self) -> StagedPassManager:
        return translation_pass_manager(self.transpiler_target)


def translation_pass_manager(target: Target) -> StagedPassManager:
    """Only translates gates outside ``target``'s basis: for simulators with every qubit
    connected, where there is nothing to lay out or route."""
    translate = BasisTranslator(SessionEquivalenceLibrary, target_basis=[], target=target)
    return StagedPassManager(
        stages=["translation"],
        translation=PassManager(
            [
                GatesInBasis(target=target),
                ConditionalController(
                    translate, condition=lambda found: not found["all_gates_in_basis"]
                ),
            ]
        ),
    )


class AerRunner(PrimitiveRunner):
    local = True

    def primitive(self, kind: Primitive, shots: int, seed: int) -> Any:
        if kind == Primitive.ESTIMATOR:
            return EstimatorV2(
                options={
                    "backend_options": dict(_BACKEND_OPTIONS),
                    "run_options": {"seed_simulator": seed},
                }
            )
        return SamplerV2(
            default_shots=shots, seed=seed, options={"backend_options": dict(_BACKEND_OPTIONS)}
        )


def make(argument: str, max_qubits: int, resolve: Callable[[str], Backend]) -> Backend:
    if argument:
        raise ConfigError(f"aer takes no argument, not {argument!r}")
    return Backend(
        name="aer",
        solver_path=SolverPath.SIMULATOR,
        target=AerTarget("aer", max_qubits),
        runner=AerRunner(),
        costs=StatevectorCosts(),
        errors=ERRORS,
        capabilities=Capabilities(exact_statevector=True, local=True),
        limits=LOCAL_SIMULATOR,
    )
