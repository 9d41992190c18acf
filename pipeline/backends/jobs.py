"""One primitive call cut into provider jobs within the limits, and their results merged back.

A PUB whose bindings do not fit one job is cut along the first axis of its broadcast shape
(an estimator PUB's observables and parameter values together, each where it has that axis;
a sampler PUB's values, its shots kept), and small PUBs share a job: jobs are filled in PUB
order, so concatenating each PUB's pieces in job order gives back exactly the result one
call would have returned (same PUB order, same shapes), in qiskit's own containers.

A call that fits one job is submitted as it was given, uncut and uncoerced: the same single
submit as with no limits at all.

The payload is estimated, cheaply, from what decides it: a circuit serialised as QPY takes
60-110 bytes an instruction (measured on QAOA templates, transpiled for Aer and for
fake_brisbane), so ``CIRCUIT_BYTES_PER_INSTRUCTION`` each; a parameter value 8 bytes (float64);
an observable ``OBSERVABLE_BYTES_PER_TERM`` plus a character per qubit for each of its terms
(a Pauli string and a complex coefficient, as the runtime encodes them). Every PUB of a job
carries its own circuit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from qiskit.primitives.containers import BitArray, DataBin, PrimitiveResult, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub

from pipeline.backends.base import Primitive
from pipeline.backends.limits import ProviderLimits
from pipeline.errors import PermanentBackendError

CIRCUIT_BYTES_PER_INSTRUCTION = 100
VALUE_BYTES = 8
OBSERVABLE_BYTES_PER_TERM = 24

Pub: TypeAlias = SamplerPub | EstimatorPub


@dataclass(frozen=True)
class PlannedJob:
    """One job of a call: the PUBs it submits, and for each the call's PUB it is part of."""

    pubs: tuple[Any, ...]
    origins: tuple[int, ...]
    seed: int
    index: int = 0  # its place among the call's jobs, for messages
    of: int = 1  # how many jobs the call makes


@dataclass(frozen=True)
class _Rows:
    """A coerced PUB as rows along its first axis: what a row weighs against each limit."""

    pub: Pub
    rows: int
    executables: int  # per row
    shots: int  # per executable; 0 for an estimator
    fixed_bytes: float  # what every piece of it carries (its circuit, what broadcasts)
    row_bytes: float


def cut(
    kind: Primitive, pubs: Sequence[Any], shots: int, seed: int, limits: ProviderLimits
) -> list[PlannedJob]:
    """The call's jobs within ``limits``, in order; one job of the PUBs as given when they fit.

    Raises PermanentBackendError when a single row of a PUB exceeds a limit on its own, or a
    PUB asks more shots than an executable may take: no cut makes such a call fit.
    """
    whole = [PlannedJob(tuple(pubs), tuple(range(len(pubs))), seed)]
    if not limits.bounded:
        return whole
    rows = [_weighed(_coerce(kind, pub, shots), limits.estimator_shots) for pub in pubs]
    for index, weighed in enumerate(rows):
        _check_shots(index, weighed, limits)
    pieces = _pack(rows, limits)
    if len(pieces) == 1:
        return whole
    return [
        PlannedJob(
            tuple(_piece(rows[i].pub, start, stop) for i, start, stop in job),
            tuple(i for i, _, _ in job),
            _job_seed(seed, index),
            index,
            len(pieces),
        )
        for index, job in enumerate(pieces)
    ]


def merge(jobs: Sequence[PlannedJob], results: Sequence[Any]) -> Any:
    """The jobs' results as one call's: each PUB's pieces concatenated along axis 0, in order."""
    if len(jobs) == 1:
        return results[0]
    parts: dict[int, list[PubResult]] = {}
    for job, result in zip(jobs, results, strict=True):
        for origin, pub_result in zip(job.origins, result, strict=True):
            parts.setdefault(origin, []).append(pub_result)
    return PrimitiveResult(
        [_joined(parts[origin]) for origin in sorted(parts)], metadata=results[0].metadata
    )


# -- cutting -------------------------------------------------------------------------------
def _coerce(kind: Primitive, pub: Any, shots: int) -> Pub:
    if kind == Primitive.SAMPLER:
        return SamplerPub.coerce(pub, shots)
    return EstimatorPub.coerce(pub)


def _weighed(pub: Pub, estimator_shots: int | None) -> _Rows:
    shape = pub.shape
    rows = shape[0] if shape else 1
    executables = math.prod(shape[1:]) if shape else 1
    arrays = [pub.parameter_values]
    if isinstance(pub, EstimatorPub):
        arrays.append(pub.observables)
    fixed = float(CIRCUIT_BYTES_PER_INSTRUCTION * len(pub.circuit.data))
    cut_bytes = 0.0
    for array in arrays:
        size = _bytes(array)
        if _along_first_axis(array, shape):
            cut_bytes += size
        else:
            fixed += size
    shots = pub.shots if isinstance(pub, SamplerPub) else (estimator_shots or 0)
    return _Rows(pub, rows, executables, shots, fixed, cut_bytes / max(rows, 1))


def _bytes(array: Any) -> float:
    """An estimate of what a parameter or observables array adds to the payload."""
    if hasattr(array, "num_parameters"):  # BindingsArray
        return float(VALUE_BYTES * array.size * array.num_parameters)
    return float(
        sum(
            observable.num_terms * (OBSERVABLE_BYTES_PER_TERM + observable.num_qubits)
            for observable in array.sparse_observables_array().flat
        )
    )


def _along_first_axis(array: Any, shape: tuple[int, ...]) -> bool:
    """Whether ``array`` has the PUB's first axis itself (else it broadcasts along it)."""
    return bool(shape) and array.ndim == len(shape) and array.shape[0] == shape[0] > 1


def _check_shots(index: int, pub: _Rows, limits: ProviderLimits) -> None:
    most = limits.shots_per_executable
    if most is not None and pub.shots > most:
        raise PermanentBackendError(
            f"PUB {index} asks {pub.shots} shots an executable; the backend takes at most {most}"
        )


def _pack(pubs: Sequence[_Rows], limits: ProviderLimits) -> list[list[tuple[int, int, int]]]:
    """Rows into jobs, in order, each filled as far as the limits allow: (PUB, start, stop)."""
    jobs: list[list[tuple[int, int, int]]] = [[]]
    used = [0.0, 0.0, 0.0]  # executables, executions, bytes of the job being filled
    for index, pub in enumerate(pubs):
        if not pub.rows:  # no bindings: its (empty) result still has its place
            jobs[-1].append((index, 0, 0))
            continue
        if limits.one_shot_count_per_job and jobs[-1] and pubs[jobs[-1][-1][0]].shots != pub.shots:
            jobs.append([])  # a job runs one number of shots: another starts a job of its own
            used = [0.0, 0.0, 0.0]
        start = 0
        while start < pub.rows:
            fit = min(pub.rows - start, _rows_fitting(pub, limits, used))
            if fit < 1 and not jobs[-1]:
                raise PermanentBackendError(_too_large(index, pub, limits))
            if fit < 1:
                jobs.append([])
                used = [0.0, 0.0, 0.0]
                continue
            jobs[-1].append((index, start, start + fit))
            used[0] += fit * pub.executables
            used[1] += fit * pub.executables * pub.shots
            used[2] += pub.fixed_bytes + fit * pub.row_bytes
            start += fit
    return jobs


def _rows_fitting(pub: _Rows, limits: ProviderLimits, used: list[float]) -> int:
    """How many more rows of ``pub`` the job being filled takes."""
    room = [
        _left(limits.executables_per_job, used[0], pub.executables),
        _left(limits.executions_per_job, used[1], pub.executables * pub.shots),
        _left(limits.payload_bytes, used[2] + pub.fixed_bytes, pub.row_bytes),
    ]
    fitting = min(room)
    return pub.rows if math.isinf(fitting) else max(0, math.floor(fitting))


def _left(limit: int | None, used: float, each: float) -> float:
    if limit is None:
        return math.inf
    if each <= 0:
        return math.inf if used <= limit else 0.0
    return (limit - used) / each


def _too_large(index: int, pub: _Rows, limits: ProviderLimits) -> str:
    return (
        f"PUB {index} cannot be cut to fit one job: a row along its first axis is "
        f"{pub.executables} executables of {pub.shots} shots and ~{pub.fixed_bytes + pub.row_bytes:.0f} "
        f"bytes; limits {limits}"
    )


def _piece(pub: Pub, start: int, stop: int) -> Pub:
    """Rows ``start:stop`` of ``pub`` (itself when that is all of it)."""
    shape = pub.shape
    if start == 0 and stop == (shape[0] if shape else 1):
        return pub
    values = _slice(pub.parameter_values, shape, start, stop)
    if isinstance(pub, SamplerPub):
        return SamplerPub(pub.circuit, values, pub.shots, validate=False)
    observables = _slice(pub.observables, shape, start, stop)
    return EstimatorPub(pub.circuit, observables, values, pub.precision, validate=False)


def _slice(array: Any, shape: tuple[int, ...], start: int, stop: int) -> Any:
    return array[start:stop] if _along_first_axis(array, shape) else array


def _job_seed(seed: int, index: int) -> int:
    """The first job keeps the call's seed (a call of one job is unchanged); the others get
    their own streams, so no two jobs sample alike."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


# -- merging -------------------------------------------------------------------------------
def _joined(parts: Sequence[PubResult]) -> PubResult:
    """One PUB's pieces as the PUB's result: every field concatenated along axis 0."""
    first = parts[0]
    if len(parts) == 1:
        return first
    fields = {name: _concatenated([part.data[name] for part in parts]) for name in first.data}
    shape = (sum(part.data.shape[0] for part in parts), *first.data.shape[1:])
    return type(first)(DataBin(**fields, shape=shape), first.metadata)


def _concatenated(values: Sequence[Any]) -> Any:
    if isinstance(values[0], BitArray):
        return BitArray.concatenate(values, axis=0)
    if isinstance(values[0], np.ndarray):
        return np.concatenate(values, axis=0)
    return values[0]
