"""What one provider job may hold, as each backend declares it, and how many jobs a call needs.

A provider refuses a job past its limits (or fails it after the queue), so a call is cut
into jobs that each fit (:mod:`pipeline.backends.jobs`) before anything is submitted. The
quantities, as the providers count them:

* an **executable** is one circuit bound to one parameter set (for an estimator, with one
  observable): a PUB of broadcast shape ``(4, 3)`` is 12 executables;
* an **execution** is one shot of one executable: executables x shots. An estimator call
  here names no shots (its precision sets them on the provider's side, and IBM does not
  count estimator jobs against its executions limit), so it counts none;
* the **payload** is the size of the submitted PUBs, estimated (see :mod:`.jobs`).

Defaults come from the providers' documentation, cited where each is set; ``[backends.<name>]``
in ``qhopper.toml`` overrides any field (:class:`pipeline.config.BackendLimitSettings`).
Nothing here imports qiskit: backends declare limits without loading it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProviderLimits:
    """One job's limits on a provider (None: no limit) and how many of a call's jobs may be
    submitted and unfinished at once."""

    executables_per_job: int | None = None
    shots_per_executable: int | None = None
    executions_per_job: int | None = None
    payload_bytes: int | None = None
    jobs_in_flight: int = 1
    # A provider that estimates from shots (Braket) counts an estimator executable's shots
    # against its executions; None: estimator calls count none (IBM's runtime).
    estimator_shots: int | None = None
    # A job runs one number of shots for all its executables (a Braket program set).
    one_shot_count_per_job: bool = False

    def overridden(self, overrides: Mapping[str, Any]) -> ProviderLimits:
        """These limits with the fields ``overrides`` names replaced (a ``[backends.<name>]`` table)."""
        return dataclasses.replace(self, **overrides) if overrides else self

    @property
    def bounded(self) -> bool:
        """Whether a call may have to be checked or cut: some limit on a job is set."""
        return (
            any(
                limit is not None
                for limit in (
                    self.executables_per_job,
                    self.shots_per_executable,
                    self.executions_per_job,
                    self.payload_bytes,
                )
            )
            or self.one_shot_count_per_job
        )

    def executables_fitting(self, shots: int, executable_bytes: float = 0.0) -> float:
        """How many executables of ``shots`` shots and ``executable_bytes`` bytes fit one job
        on their own (``math.inf``: no limit binds)."""
        return min(
            _room(self.executables_per_job, 1.0),
            _room(self.executions_per_job, shots),
            _room(self.payload_bytes, executable_bytes),
        )


# Aer in this process has no job limits: AerSimulator's max_job_size, "If None simulation of
# all circuits are submitted to the executor as a single job (Default: None)"
# (https://qiskit.github.io/qiskit-aer/stubs/qiskit_aer.AerSimulator.html). One job at a
# time: a worker process owns one core, and Aer runs single-threaded in it (aer.py).
LOCAL_SIMULATOR = ProviderLimits()

# IBM Quantum (qiskit-ibm-runtime), and the local stand-ins of its devices (aer-noisy:<fake>,
# ibm:fake_<device>), which behave like the device:
IBM_RUNTIME = ProviderLimits(
    # No limit on circuits or shots as such: "The limits reported by the backend.configuration()
    # fields max_shots and max_experiments are no longer relevant or enforced", and "At most,
    # 10 million executions are allowed for Sampler jobs (Estimator jobs can be split into
    # smaller sub-jobs, so this limit doesn't apply)"; executions are circuits after
    # broadcasting times shots (https://quantum.cloud.ibm.com/docs/guides/job-limits).
    executables_per_job=None,
    shots_per_executable=None,
    executions_per_job=10_000_000,
    # "Inputs to jobs cannot exceed 50MB in size"
    # (https://quantum.cloud.ibm.com/docs/guides/max-execution-time#other-limitations). IBM has
    # since raised it to 300 MB (Qiskit/documentation#5369); 50 MB stays, as the payload here
    # is a rough estimate, not the runtime's compressed encoding.
    payload_bytes=50_000_000,
    # "The number of jobs running in parallel is based on the degree of parallelism configured
    # for the backend, which is five for most backends today"
    # (https://quantum.cloud.ibm.com/docs/guides/execution-modes-faq): more would only queue.
    jobs_in_flight=5,
)


def jobs_needed(
    limits: ProviderLimits, executables: int, shots: int = 0, executable_bytes: float = 0.0
) -> int:
    """Jobs one call of ``executables`` alike executables needs: at least one, more where a
    limit cuts it (what per-job prices and estimates count)."""
    fitting = limits.executables_fitting(shots, executable_bytes)
    if executables <= 0 or math.isinf(fitting):
        return 1
    return max(1, math.ceil(executables / max(1, math.floor(fitting))))


def executions_in(result: Iterable[Any]) -> int:
    """Executions a primitive result holds: every sampled register's executables x shots,
    once per PUB (an estimator's result holds no shots: 0)."""
    total = 0
    for pub_result in result:
        sampled = [v for v in pub_result.data.values() if hasattr(v, "num_shots")]
        if sampled:
            total += sampled[0].size * sampled[0].num_shots
    return total


def _room(limit: int | None, each: float) -> float:
    """How many items of size ``each`` a ``limit`` holds (``math.inf``: none or no size)."""
    if limit is None or each <= 0:
        return math.inf
    return limit / each
